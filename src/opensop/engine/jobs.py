"""Work the engine asks for later: durable jobs written with the transition that needs them.

A job is a row in the same transaction as the state change that caused it, so it can
neither be lost nor run for a change that was rolled back. Each carries the step attempt
it belongs to; when its result comes back, the engine ignores it unless the step is
still at that attempt (a job that ran twice after a crash changes nothing the 2nd time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from opensop.definition import models
from opensop.definition.durations import parse_duration


class JobKind(StrEnum):
    RUN_SCRIPT = "run_script"  # run an automated step's `run:` script
    WAIT_TIMER = "wait_timer"  # a wait step's timer is due
    STEP_TIMEOUT = "step_timeout"  # a waiting step's `timeout` is up: apply on_timeout
    SLA_CHECK = "sla_check"  # the instance's sla warning or target time is reached
    SCHEDULE_TICK = "schedule_tick"  # a schedule or interval trigger is due: start one


class JobState(StrEnum):
    QUEUED = "queued"  # waiting for due_at, or for a runner
    LEASED = "leased"  # a runner holds it until lease_expires_at
    DONE = "done"  # applied
    FAILED = "failed"  # gave up; last_error says why


@dataclass(frozen=True)
class JobRequest:
    kind: JobKind
    due_at: datetime
    step_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None


DEFAULT_SCRIPT_TIMEOUT_SECONDS = 60.0
MAX_RETRY_DELAY_SECONDS = 3600.0


def retry_delay(policy: models.RetryPolicy | None, failed_attempt: int) -> float | None:
    """Seconds to wait before the attempt after ``failed_attempt`` (1-based), or None
    when the policy allows no more attempts."""
    if policy is None or failed_attempt > policy.max:
        return None
    initial = parse_duration(policy.initial)
    if policy.backoff is models.Backoff.EXPONENTIAL:
        delay = initial * float(2 ** (failed_attempt - 1))
    else:
        delay = initial
    ceiling = parse_duration(policy.max_delay) if policy.max_delay else MAX_RETRY_DELAY_SECONDS
    return min(delay, ceiling)


def script_timeout_seconds(step: models.StepBase) -> float:
    return parse_duration(step.timeout) if step.timeout else DEFAULT_SCRIPT_TIMEOUT_SECONDS
