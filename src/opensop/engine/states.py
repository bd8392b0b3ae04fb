"""The state sets of instances and steps. Strings and docs derive from these enums."""

from __future__ import annotations

from enum import StrEnum


class InstanceState(StrEnum):
    PENDING = "pending"  # created, not yet begun (reserved: start runs at once today)
    RUNNING = "running"  # executing, or waiting on a person, worker, callback or timer
    COMPLETED = "completed"  # every step done or exit_when fired; outputs computed
    FAILED = "failed"  # a step failed without continue_on_error
    CANCELLED = "cancelled"  # stopped on request; irreversible

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_INSTANCE_STATES


TERMINAL_INSTANCE_STATES = frozenset(
    {InstanceState.COMPLETED, InstanceState.FAILED, InstanceState.CANCELLED}
)


class StepState(StrEnum):
    PENDING = "pending"  # not reached yet
    ACTIVE = "active"  # reached; its sub_state says what it waits for
    COMPLETED = "completed"  # outputs recorded
    FAILED = "failed"  # gave up (after retries); may be retried from outside
    SKIPPED = "skipped"  # condition false, instance cancelled/exited, or on_timeout: skip

    @property
    def is_finished(self) -> bool:
        return self in (StepState.COMPLETED, StepState.FAILED, StepState.SKIPPED)


class SubState(StrEnum):
    """What an active step waits for."""

    WAITING_FOR_INPUT = "waiting_for_input"  # form: a person or agent submits outputs
    WAITING_FOR_APPROVAL = "waiting_for_approval"  # approval: approved + notes
    ESCALATED = "escalated"  # judgment with no agent (or below threshold): a person decides
    WAITING_FOR_WORKER = "waiting_for_worker"  # automated without run: an external worker
    RUNNING = "running"  # the engine is executing it in the background
    WAITING_FOR_CALLBACK = "waiting_for_callback"  # webhook: the one-shot callback
    WAITING_FOR_TIMER = "waiting_for_timer"  # wait: a durable timer
    WAITING_FOR_SUBPROCESS = "waiting_for_subprocess"  # subprocess: the child instance
