"""Commands that come back from background work: script results, worker failures,
timers, timeouts, SLA checks, and retries asked for from outside.

Each returns a Transition, or None when the news is stale: the step has moved on since
the job was written (another attempt, a submission, a cancel). A job that runs twice
after a crash therefore changes nothing the second time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from opensop.definition import models
from opensop.definition.durations import parse_duration
from opensop.engine.jobs import JobKind, JobRequest, retry_delay
from opensop.engine.machine import after_step, fail_step, finish_step, skip_step
from opensop.engine.records import Event, InstanceRun, StepRun, Transition
from opensop.engine.states import InstanceState, StepState, SubState
from opensop.errors import InvalidTransition


def _current(
    instance: InstanceRun, step_id: str, attempt: int, *waiting: SubState
) -> StepRun | None:
    """The step, if it is still active at ``attempt`` and waiting in one of ``waiting``."""
    if instance.state.is_terminal:
        return None
    run = instance.steps.get(step_id)
    if run is None or run.state is not StepState.ACTIVE or run.attempt != attempt:
        return None
    if waiting and run.sub_state not in waiting:
        return None
    return run


def script_succeeded(
    instance: InstanceRun,
    definition: models.ProcessDefinition,
    step_id: str,
    attempt: int,
    outputs: dict[str, Any],
    now: datetime,
    stderr: str | None = None,
) -> Transition | None:
    run = _current(instance, step_id, attempt, SubState.RUNNING)
    if run is None:
        return None
    transition = Transition(instance)
    step = definition.step(step_id)
    run.outputs = outputs
    run.stderr = stderr
    run.decided_by = "engine:script"
    finish_step(transition, step, run, now, actor="engine")
    after_step(transition, definition, step, run, now)
    return transition


def attempt_failed(
    instance: InstanceRun,
    definition: models.ProcessDefinition,
    step_id: str,
    attempt: int,
    *,
    code: str,
    message: str,
    now: datetime,
    actor: str,
    retryable: bool = True,
    details: dict[str, Any] | None = None,
    stderr: str | None = None,
) -> Transition | None:
    """A script run or a worker failed this attempt: retry per the step's policy, or fail."""
    run = _current(instance, step_id, attempt, SubState.RUNNING, SubState.WAITING_FOR_WORKER)
    if run is None:
        return None
    run.stderr = stderr
    transition = Transition(instance)
    step = definition.step(step_id)
    error: dict[str, Any] = {"code": code, "message": message, "attempt": attempt}
    if details:
        error.update(details)
    delay = retry_delay(step.retry, attempt) if retryable else None
    if delay is None:
        run.error = error
        fail_step(transition, step, run, now, code, message)
        if not instance.state.is_terminal:
            after_step(transition, definition, step, run, now)
        return transition
    run.error = error
    run.attempt += 1
    due = now + timedelta(seconds=delay)
    transition.changed_steps.add(step_id)
    transition.events.append(
        Event(
            "step.retry_scheduled",
            step_id,
            actor,
            {**error, "next_attempt": run.attempt, "delay_seconds": delay},
        )
    )
    if run.sub_state is SubState.RUNNING:
        transition.jobs.append(
            JobRequest(JobKind.RUN_SCRIPT, due, step_id, {"attempt": run.attempt})
        )
    else:
        run.due_at = due  # the worker step is offered again once its backoff is over
        transition.jobs.extend(_wait_timeout(step, run, due))
    return transition


def timer_fired(
    instance: InstanceRun,
    definition: models.ProcessDefinition,
    step_id: str,
    attempt: int,
    now: datetime,
) -> Transition | None:
    run = _current(instance, step_id, attempt, SubState.WAITING_FOR_TIMER)
    if run is None:
        return None
    transition = Transition(instance)
    step = definition.step(step_id)
    run.outputs = {"waited_until": now.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    run.due_at = None
    finish_step(transition, step, run, now, actor="timer")
    after_step(transition, definition, step, run, now)
    return transition


def step_timed_out(
    instance: InstanceRun,
    definition: models.ProcessDefinition,
    step_id: str,
    attempt: int,
    now: datetime,
) -> Transition | None:
    """Apply the step's `on_timeout` (fail when unset)."""
    run = _current(instance, step_id, attempt)
    if run is None:
        return None
    step = definition.step(step_id)
    policy = step.on_timeout or models.OnTimeout.FAIL
    transition = Transition(instance)
    data = {"timeout": step.timeout, "on_timeout": policy.value}
    transition.events.append(Event("step.timed_out", step_id, "timer", data))
    if policy is models.OnTimeout.FAIL:
        fail_step(transition, step, run, now, "timeout", f"no result within {step.timeout}")
        if not instance.state.is_terminal:
            after_step(transition, definition, step, run, now)
    elif policy is models.OnTimeout.SKIP:
        skip_step(transition, run, now, f"timed out after {step.timeout}")
        after_step(transition, definition, step, run, now)
    elif policy is models.OnTimeout.ESCALATE:
        # A person now decides: the step stays active and accepts a submission.
        run.sub_state = SubState.ESCALATED
        transition.changed_steps.add(step_id)
        transition.events.append(Event("step.escalated", step_id, "timer", data))
    else:  # notify-and-wait: record the breach for the inbox and keep waiting
        transition.events.append(Event("step.timeout_notified", step_id, "timer", data))
    return transition


def sla_due(
    instance: InstanceRun, level: str, definition: models.ProcessDefinition
) -> Transition | None:
    if instance.state.is_terminal or definition.sla is None:
        return None
    transition = Transition(instance)
    kind = "instance.sla_breached" if level == "target" else "instance.sla_warning"
    transition.events.append(
        Event(kind, None, "timer", {"level": level, "sla": getattr(definition.sla, level)})
    )
    return transition


def retry_failed_step(
    instance: InstanceRun,
    definition: models.ProcessDefinition,
    step_id: str,
    now: datetime,
    actor: str,
) -> Transition:
    """Re-run a failed automated step of a failed instance: the fix-and-continue path."""
    run = instance.steps[step_id]
    step = definition.step(step_id)
    if run.state is not StepState.FAILED or not isinstance(step, models.AutomatedStep):
        raise InvalidTransition(
            f"Step '{step_id}' is {run.state}; only a failed automated step can be retried."
        )
    if (
        instance.state is not InstanceState.FAILED
        or (instance.error or {}).get("step_id") != step_id
    ):
        raise InvalidTransition(
            "Only the step that failed the instance can be retried "
            f"(the instance is {instance.state})."
        )
    transition = Transition(instance)
    instance.state = InstanceState.RUNNING
    instance.error = None
    instance.completed_at = None
    run.state = StepState.ACTIVE
    run.attempt += 1
    run.completed_at = None
    run.started_at = now
    run.due_at = None
    transition.changed_steps.add(step_id)
    transition.events.append(
        Event("step.retried", step_id, actor, {"attempt": run.attempt, "previous": run.error})
    )
    if step.run is not None:
        run.sub_state = SubState.RUNNING
        transition.jobs.append(
            JobRequest(JobKind.RUN_SCRIPT, now, step_id, {"attempt": run.attempt})
        )
    else:
        run.sub_state = SubState.WAITING_FOR_WORKER
        transition.jobs.extend(_wait_timeout(step, run, now))
    return transition


def _wait_timeout(step: models.StepBase, run: StepRun, offered: datetime) -> list[JobRequest]:
    """The timeout job of a worker step's new attempt: each attempt waits at most
    `timeout` for a worker from when it is offered (the old attempt's job is stale)."""
    if step.timeout is None:
        return []
    due = offered + timedelta(seconds=parse_duration(step.timeout))
    return [JobRequest(JobKind.STEP_TIMEOUT, due, run.step_id, {"attempt": run.attempt})]
