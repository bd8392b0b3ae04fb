"""Which step types and triggers this server executes today.

Part of registration, not of the pure engine: checking a `run:` script looks at files.

A definition using anything else is refused at registration with a clear message,
never accepted and faked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opensop.definition import models
from opensop.runtime.scripts import ScriptPathError, resolve_script

_NOT_YET = {
    models.StepType.LLM: "llm steps need a model provider, which this server does not run yet",
    models.StepType.WEBHOOK: "webhook steps are not executed by this server yet",
    models.StepType.SUBPROCESS: "subprocess steps are not executed by this server yet",
    models.StepType.NOTIFICATION: "notification steps are not delivered by this server yet",
    models.StepType.LOOP: "loop steps are not executed by this server yet",
}


def unsupported_steps(
    definition: models.ProcessDefinition, script_root: Path | None
) -> list[dict[str, Any]]:
    """One problem per step this server cannot run, shaped like definition problems.

    ``script_root`` is where `run:` scripts resolve (the loaded folder, or the configured
    process directory); without one, steps with scripts cannot run here.
    """
    problems: list[dict[str, Any]] = []
    for index, step in enumerate(definition.steps):
        path = f"process.steps[{index}]"
        reason = _NOT_YET.get(step.step_type)
        if reason is not None:
            path += ".type"
        elif isinstance(step, models.AutomatedStep) and step.run is not None:
            path += ".run"
            reason = _script_problem(script_root, step.run)
        if reason is not None:
            problems.append(
                {"path": path, "code": "unsupported_step_type", "message": f"{step.id}: {reason}"}
            )
    if isinstance(definition.trigger, models.WebhookTrigger):
        problems.append(
            {
                "path": "process.trigger.type",
                "code": "unsupported_trigger",
                "message": "webhook triggers are not run by this server yet",
            }
        )
    return problems


def _script_problem(script_root: Path | None, run: str) -> str | None:
    if script_root is None:
        return (
            "steps with `run:` scripts need a process directory: register the file with "
            "`opensop serve --load DIR`, or set OPENSOP_PROCESS_DIR"
        )
    try:
        resolve_script(script_root, run)
    except ScriptPathError as error:
        return f"run: {error.message}"
    return None
