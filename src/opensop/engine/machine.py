"""The engine: a pure state machine over one instance.

    (instance, definition, command, now) ──▶ Transition(instance', changed steps, events)

No I/O happens here: the service loads the instance, calls one of the functions below,
and writes the transition back in one transaction together with its events.

Steps run in definition order, one at a time. Internal work (conditions, skipping,
activating human steps, literal outputs, exit_when, process outputs) happens at once
inside the same call; the machine stops at the first step that waits for the outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from opensop.definition import models
from opensop.definition.durations import parse_duration
from opensop.definition.references import UnresolvedReference
from opensop.engine.context import (
    build_context,
    condition,
    has_literal_outputs,
    literal_outputs,
    process_outputs,
    render_lenient,
    resolve_step_inputs,
    template,
)
from opensop.engine.jobs import JobKind, JobRequest
from opensop.engine.records import Event, InstanceRun, StepRun, Transition
from opensop.engine.states import InstanceState, StepState, SubState
from opensop.errors import InvalidTransition

# Sub-states in which a person, agent or worker completes the step by submitting.
SUBMITTABLE = frozenset(
    {
        SubState.WAITING_FOR_INPUT,
        SubState.WAITING_FOR_APPROVAL,
        SubState.ESCALATED,
        SubState.WAITING_FOR_WORKER,
    }
)

_OWN_OUTPUTS = ("outputs",)


def new_instance(
    *,
    instance_id: str,
    workspace_id: str,
    definition: models.ProcessDefinition,
    inputs: dict[str, Any],
    metadata: dict[str, Any] | None,
    now: datetime,
    trigger_payload: Any = None,
) -> InstanceRun:
    steps = {
        step.id: StepRun(step_id=step.id, position=index, type=step.step_type.value)
        for index, step in enumerate(definition.steps)
    }
    return InstanceRun(
        id=instance_id,
        workspace_id=workspace_id,
        process_name=definition.name,
        process_version=definition.version,
        state=InstanceState.RUNNING,
        inputs=inputs,
        started_at=now,
        steps=steps,
        metadata=metadata,
        trigger_payload=trigger_payload,
    )


def start(
    instance: InstanceRun, definition: models.ProcessDefinition, now: datetime, actor: str | None
) -> Transition:
    """Begin a freshly created instance and run it to its first waiting step."""
    transition = Transition(instance, changed_steps=set(instance.steps))
    transition.events.append(Event("instance.started", actor=actor))
    if definition.sla is not None:
        for level in ("warning", "target"):
            text = getattr(definition.sla, level)
            if text is not None:
                due = now + timedelta(seconds=parse_duration(text))
                transition.jobs.append(JobRequest(JobKind.SLA_CHECK, due, None, {"level": level}))
    advance(transition, definition, now)
    return transition


def submit(
    instance: InstanceRun,
    definition: models.ProcessDefinition,
    step_id: str,
    outputs: dict[str, Any],
    *,
    decided_by: str | None,
    confidence: float | None,
    now: datetime,
    actor: str | None,
) -> Transition:
    """Complete a waiting step with outputs already validated against its declaration."""
    run = instance.steps[step_id]
    ensure_submittable(instance, run)
    transition = Transition(instance)
    step = definition.step(step_id)
    run.outputs = outputs
    run.decided_by = decided_by
    run.confidence = confidence
    finish_step(transition, step, run, now, actor=actor or decided_by)
    after_step(transition, definition, step, run, now)
    return transition


def cancel(
    instance: InstanceRun, reason: str | None, now: datetime, actor: str | None
) -> Transition:
    if instance.state.is_terminal:
        raise InvalidTransition(
            f"The instance is already {instance.state}; it cannot be cancelled."
        )
    transition = Transition(instance)
    for run in instance.step_runs():
        if run.state in (StepState.PENDING, StepState.ACTIVE):
            run.state = StepState.SKIPPED
            run.sub_state = None
            run.completed_at = now
            transition.changed_steps.add(run.step_id)
            transition.events.append(
                Event("step.skipped", run.step_id, actor, {"reason": "instance cancelled"})
            )
    instance.state = InstanceState.CANCELLED
    instance.completed_at = now
    instance.error = {"code": "cancelled", "message": reason or "Cancelled on request."}
    transition.events.append(Event("instance.cancelled", actor=actor, data={"reason": reason}))
    return transition


def ensure_submittable(instance: InstanceRun, run: StepRun) -> None:
    if instance.state.is_terminal:
        raise InvalidTransition(
            f"The instance is {instance.state}; its steps can no longer be submitted."
        )
    if run.state is not StepState.ACTIVE or run.sub_state not in SUBMITTABLE:
        waiting = f" ({run.sub_state})" if run.sub_state else ""
        raise InvalidTransition(
            f"Step '{run.step_id}' is {run.state}{waiting}; only a step waiting for input, "
            "approval, an escalation or a worker can be submitted."
        )


# -- the advance loop ------------------------------------------------------------------


def advance(transition: Transition, definition: models.ProcessDefinition, now: datetime) -> None:
    """Run internal work from the first pending step until something must wait."""
    instance = transition.instance
    for step in definition.steps:
        run = instance.steps[step.id]
        if run.state is StepState.ACTIVE:
            return  # still waiting on the outside
        if run.state is not StepState.PENDING:
            continue
        context = build_context(instance, definition)
        if step.condition is not None and not condition(step.condition).evaluate(context):
            skip_step(transition, run, now, "condition is false")
            continue
        try:
            run.inputs = resolve_step_inputs(step, context)
        except UnresolvedReference as error:
            fail_step(
                transition,
                step,
                run,
                now,
                "unresolved_reference",
                f"input reference '{error.reference}' did not resolve",
            )
            if instance.state.is_terminal:
                return
            continue
        _activate(transition, definition, step, run, now)
        if run.sub_state is not None:  # activated and now waiting on the outside
            return
        if not after_step(transition, definition, step, run, now, continue_run=False):
            return
    _complete(transition, definition, now)


def after_step(
    transition: Transition,
    definition: models.ProcessDefinition,
    step: models.StepBase,
    run: StepRun,
    now: datetime,
    *,
    continue_run: bool = True,
) -> bool:
    """Apply exit_when after a step finished; continue unless the instance ended."""
    instance = transition.instance
    if instance.state.is_terminal:
        return False
    if (
        run.state is StepState.COMPLETED
        and step.exit_when is not None
        and condition(step.exit_when).evaluate(
            {**build_context(instance, definition), "outputs": run.outputs or {}},
            bare_root=_OWN_OUTPUTS,
        )
    ):
        _exit_early(transition, definition, step, run, now)
        return False
    if continue_run:
        advance(transition, definition, now)
    return True


def _activate(
    transition: Transition,
    definition: models.ProcessDefinition,
    step: models.StepBase,
    run: StepRun,
    now: datetime,
) -> None:
    run.started_at = now
    run.attempt += 1
    transition.changed_steps.add(run.step_id)
    if isinstance(step, models.AutomatedStep) and step.run is None and has_literal_outputs(step):
        try:
            run.outputs = literal_outputs(step, build_context(transition.instance, definition))
        except UnresolvedReference as error:
            fail_step(
                transition,
                step,
                run,
                now,
                "unresolved_reference",
                f"output reference '{error.reference}' did not resolve",
            )
            return
        finish_step(transition, step, run, now, actor="engine")
        return
    if isinstance(step, models.WaitStep):
        try:
            due = _wait_until(step, build_context(transition.instance, definition), now)
        except ValueError as error:
            fail_step(transition, step, run, now, "invalid_wait_time", str(error))
            return
        if due is not None and due <= now:
            run.outputs = {"waited_until": _iso(now)}
            finish_step(transition, step, run, now, actor="engine")
            return
        if due is not None:
            run.due_at = due
            transition.jobs.append(
                JobRequest(JobKind.WAIT_TIMER, due, run.step_id, {"attempt": run.attempt})
            )
    run.state = StepState.ACTIVE
    run.sub_state = waiting_sub_state(step)
    transition.events.append(
        Event("step.activated", run.step_id, "engine", {"sub_state": str(run.sub_state)})
    )
    if run.sub_state is SubState.RUNNING:
        transition.jobs.append(
            JobRequest(JobKind.RUN_SCRIPT, now, run.step_id, {"attempt": run.attempt})
        )
    elif step.timeout is not None:
        # A script's timeout bounds each run of it; any other step's bounds its wait.
        due = now + timedelta(seconds=parse_duration(step.timeout))
        transition.jobs.append(
            JobRequest(JobKind.STEP_TIMEOUT, due, run.step_id, {"attempt": run.attempt})
        )


def _wait_until(step: models.WaitStep, context: dict[str, Any], now: datetime) -> datetime | None:
    """When a wait step's timer is due; None when it waits on a condition that is false.

    `until` is evaluated when the step activates (and whenever the instance changes); with
    nothing else running in this instance, a false condition waits for the step's timeout.
    Raises ValueError for an `until_time` that is not a date-time.
    """
    wait = step.wait
    if wait.seconds is not None:
        return now + timedelta(seconds=float(wait.seconds))
    if wait.until is not None:
        return now if condition(wait.until).evaluate(context) else None
    assert wait.until_time is not None
    try:
        value = template(wait.until_time).render(context)
        due = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (UnresolvedReference, ValueError):
        raise ValueError(
            f"until_time {wait.until_time!r} did not give an ISO 8601 date-time"
        ) from None
    return due if due.tzinfo else due.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def waiting_sub_state(step: models.StepBase) -> SubState:
    """What a step waits for once active (for the step types the engine runs today)."""
    if isinstance(step, models.AutomatedStep) and step.run is not None:
        return SubState.RUNNING
    if isinstance(step, models.WaitStep):
        return SubState.WAITING_FOR_TIMER
    if isinstance(step, models.FormStep):
        return SubState.WAITING_FOR_INPUT
    if isinstance(step, models.ApprovalStep):
        return SubState.WAITING_FOR_APPROVAL
    if isinstance(step, models.JudgmentStep):
        # No agent is configured on this server: a person decides.
        return SubState.ESCALATED
    if isinstance(step, models.AutomatedStep) and step.run is None:
        return SubState.WAITING_FOR_WORKER
    raise AssertionError(f"step type {step.step_type} is refused at registration")


def finish_step(
    transition: Transition,
    step: models.StepBase,
    run: StepRun,
    now: datetime,
    *,
    actor: str | None,
) -> None:
    run.state = StepState.COMPLETED
    run.sub_state = None
    run.error = None
    run.completed_at = now
    transition.changed_steps.add(run.step_id)
    data: dict[str, Any] = {"outputs": run.outputs}
    if run.decided_by is not None:
        data["decided_by"] = run.decided_by
    if run.confidence is not None:
        data["confidence"] = run.confidence
    transition.events.append(Event("step.completed", run.step_id, actor, data))


def fail_step(
    transition: Transition,
    step: models.StepBase,
    run: StepRun,
    now: datetime,
    code: str,
    message: str,
) -> None:
    run.state = StepState.FAILED
    run.sub_state = None
    run.completed_at = now
    run.error = {"code": code, "message": message}
    transition.changed_steps.add(run.step_id)
    transition.events.append(Event("step.failed", run.step_id, "engine", dict(run.error)))
    if step.continue_on_error:
        return
    instance = transition.instance
    instance.state = InstanceState.FAILED
    instance.completed_at = now
    instance.error = {"step_id": run.step_id, "code": code, "message": message}
    transition.events.append(Event("instance.failed", actor="engine", data=dict(instance.error)))


def skip_step(transition: Transition, run: StepRun, now: datetime, reason: str) -> None:
    run.state = StepState.SKIPPED
    run.sub_state = None
    run.completed_at = now
    transition.changed_steps.add(run.step_id)
    transition.events.append(Event("step.skipped", run.step_id, "engine", {"reason": reason}))


def _exit_early(
    transition: Transition,
    definition: models.ProcessDefinition,
    step: models.StepBase,
    run: StepRun,
    now: datetime,
) -> None:
    instance = transition.instance
    for other in instance.step_runs():
        if other.state is StepState.PENDING:
            skip_step(transition, other, now, f"exit_when of step '{step.id}'")
    context = {**build_context(instance, definition), "outputs": run.outputs or {}}
    extra: dict[str, Any] = {}
    for name, value in (step.exit_outputs or {}).items():
        extra[name] = render_lenient(value, context)
    transition.events.append(Event("instance.exited", step.id, "engine", {"outputs": extra}))
    _complete(transition, definition, now, extra_outputs=extra)


def _complete(
    transition: Transition,
    definition: models.ProcessDefinition,
    now: datetime,
    *,
    extra_outputs: Mapping[str, Any] | None = None,
) -> None:
    instance = transition.instance
    outputs = process_outputs(definition, instance)
    outputs.update(extra_outputs or {})
    instance.outputs = outputs
    instance.state = InstanceState.COMPLETED
    instance.completed_at = now
    transition.events.append(Event("instance.completed", actor="engine", data={"outputs": outputs}))
