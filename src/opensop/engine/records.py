"""Plain records the engine reads and returns: an instance with its steps, and events.

The store persists exactly these; the engine never sees a database row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opensop.engine.jobs import JobRequest
from opensop.engine.states import InstanceState, StepState, SubState


@dataclass
class StepRun:
    """One step of one instance."""

    step_id: str
    position: int
    type: str
    state: StepState = StepState.PENDING
    sub_state: SubState | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    decided_by: str | None = None
    confidence: float | None = None
    attempt: int = 0
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # When a waiting step may next be acted on: a worker step's retry after its backoff.
    due_at: datetime | None = None
    stderr: str | None = None  # the tail of a script's stderr, kept for diagnosis


@dataclass
class InstanceRun:
    """One instance and its steps, in definition order."""

    id: str
    workspace_id: str
    process_name: str
    process_version: str
    state: InstanceState
    inputs: dict[str, Any]
    started_at: datetime
    steps: dict[str, StepRun]
    outputs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    completed_at: datetime | None = None
    trigger_payload: Any = None

    def step_runs(self) -> list[StepRun]:
        return sorted(self.steps.values(), key=lambda run: run.position)


@dataclass(frozen=True)
class Event:
    """One line of the audit log: what changed, on which step, by whom."""

    type: str
    step_id: str | None = None
    actor: str | None = None
    data: dict[str, Any] | None = None


@dataclass
class Transition:
    """What one command did: the changed instance, which steps changed, the events, and
    the jobs to write in the same transaction."""

    instance: InstanceRun
    changed_steps: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    jobs: list[JobRequest] = field(default_factory=list)
