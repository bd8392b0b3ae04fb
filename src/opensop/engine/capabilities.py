"""Which step types this server executes today.

A definition using anything else is refused at registration with a clear message,
never accepted and faked.
"""

from __future__ import annotations

from typing import Any

from opensop.definition import models

_NOT_YET = {
    models.StepType.LLM: "llm steps need a model provider, which this server does not run yet",
    models.StepType.WEBHOOK: "webhook steps are not executed by this server yet",
    models.StepType.SUBPROCESS: "subprocess steps are not executed by this server yet",
    models.StepType.NOTIFICATION: "notification steps are not delivered by this server yet",
    models.StepType.WAIT: "wait steps (durable timers) are not executed by this server yet",
    models.StepType.LOOP: "loop steps are not executed by this server yet",
}


def unsupported_steps(definition: models.ProcessDefinition) -> list[dict[str, Any]]:
    """One problem per step this server cannot run, shaped like definition problems."""
    problems: list[dict[str, Any]] = []
    for index, step in enumerate(definition.steps):
        path = f"process.steps[{index}]"
        reason = _NOT_YET.get(step.step_type)
        if isinstance(step, models.AutomatedStep) and step.run is not None:
            path += ".run"
            reason = (
                "automated steps with `run:` scripts are not executed by this server yet; "
                "drop `run:` to let an external worker complete the step"
            )
        elif reason is not None:
            path += ".type"
        if isinstance(step, models.StepBase) and step.on_timeout is not None and reason is None:
            path += ".on_timeout"
            reason = "step timeouts (on_timeout) are not enforced by this server yet"
        if reason is not None:
            problems.append(
                {"path": path, "code": "unsupported_step_type", "message": f"{step.id}: {reason}"}
            )
    trigger = definition.trigger
    if not isinstance(trigger, models.ApiTrigger | models.ManualTrigger):
        problems.append(
            {
                "path": "process.trigger.type",
                "code": "unsupported_trigger",
                "message": f"{trigger.type} triggers are not run by this server yet",
            }
        )
    return problems
