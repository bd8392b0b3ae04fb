"""Aggregates for the metrics and status views, computed in the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from opensop.engine.states import InstanceState, StepState, SubState
from opensop.store.tables import instances, steps

HUMAN_SUB_STATES = (
    SubState.WAITING_FOR_INPUT.value,
    SubState.WAITING_FOR_APPROVAL.value,
    SubState.ESCALATED.value,
)
_ACTIVE_INSTANCE_STATES = (InstanceState.PENDING.value, InstanceState.RUNNING.value)


@dataclass(frozen=True)
class ProcessCounts:
    process_name: str
    version: str
    started: int
    completed: int
    failed: int
    in_flight: int


@dataclass(frozen=True)
class ProcessActivity:
    active_instances: int
    last_state: str | None
    last_finished_at: datetime | None


def process_counts(
    conn: sa.Connection, workspace_id: str, since: datetime, process_name: str | None
) -> list[ProcessCounts]:
    state = instances.c.state

    def count_of(*values: str) -> sa.ColumnElement[int]:
        return sa.func.sum(sa.case((state.in_(values), 1), else_=0))

    query = (
        sa.select(
            instances.c.process_name,
            instances.c.process_version,
            sa.func.count(),
            count_of(InstanceState.COMPLETED.value),
            count_of(InstanceState.FAILED.value),
            count_of(*_ACTIVE_INSTANCE_STATES),
        )
        .where(*_window(workspace_id, since, process_name))
        .group_by(instances.c.process_name, instances.c.process_version)
        .order_by(instances.c.process_name, instances.c.process_version)
    )
    return [
        ProcessCounts(name, version, int(n), int(done or 0), int(bad or 0), int(live or 0))
        for name, version, n, done, bad, live in conn.execute(query)
    ]


def completed_durations(
    conn: sa.Connection, workspace_id: str, since: datetime, process_name: str | None
) -> list[float]:
    """Seconds from start to completion of each completed instance in the window."""
    rows = conn.execute(
        sa.select(instances.c.started_at, instances.c.completed_at).where(
            *_window(workspace_id, since, process_name),
            instances.c.state == InstanceState.COMPLETED.value,
            instances.c.completed_at.is_not(None),
        )
    )
    return sorted((done - start).total_seconds() for start, done in rows)


def step_counts(
    conn: sa.Connection, workspace_id: str, since: datetime, process_name: str | None
) -> dict[str, int]:
    rows = conn.execute(
        sa.select(steps.c.state, sa.func.count())
        .select_from(steps.join(instances, steps.c.instance_id == instances.c.id))
        .where(*_window(workspace_id, since, process_name))
        .group_by(steps.c.state)
    )
    counts = {state.value: 0 for state in StepState}
    counts.update({state: int(n) for state, n in rows})
    return counts


def step_stats(
    conn: sa.Connection, workspace_id: str, since: datetime, process_name: str | None
) -> list[tuple[str, str, int, int, list[float]]]:
    """Per (process, step): finished count, failed count, durations of completed runs."""
    rows = conn.execute(
        sa.select(
            steps.c.process_name,
            steps.c.step_id,
            steps.c.state,
            steps.c.started_at,
            steps.c.completed_at,
        )
        .select_from(steps.join(instances, steps.c.instance_id == instances.c.id))
        .where(
            *_window(workspace_id, since, process_name),
            steps.c.state.in_((StepState.COMPLETED.value, StepState.FAILED.value)),
        )
    )
    grouped: dict[tuple[str, str], tuple[int, int, list[float]]] = {}
    for process, step_id, state, started, completed in rows:
        total, failed, durations = grouped.get((process, step_id), (0, 0, []))
        if state == StepState.FAILED.value:
            failed += 1
        elif started is not None and completed is not None:
            durations.append((completed - started).total_seconds())
        grouped[(process, step_id)] = (total + 1, failed, durations)
    return [(p, s, total, failed, d) for (p, s), (total, failed, d) in sorted(grouped.items())]


def waiting_human_steps(
    conn: sa.Connection, workspace_id: str, process_name: str | None
) -> tuple[int, datetime | None]:
    conditions = [
        steps.c.workspace_id == workspace_id,
        steps.c.state == StepState.ACTIVE.value,
        steps.c.sub_state.in_(HUMAN_SUB_STATES),
    ]
    if process_name is not None:
        conditions.append(steps.c.process_name == process_name)
    count, oldest = conn.execute(
        sa.select(sa.func.count(), sa.func.min(steps.c.started_at)).where(*conditions)
    ).one()
    return int(count), oldest


def process_activity(conn: sa.Connection, workspace_id: str, process_name: str) -> ProcessActivity:
    base = (instances.c.workspace_id == workspace_id, instances.c.process_name == process_name)
    active = conn.execute(
        sa.select(sa.func.count()).where(*base, instances.c.state.in_(_ACTIVE_INSTANCE_STATES))
    ).scalar_one()
    last = conn.execute(
        sa.select(instances.c.state, instances.c.completed_at)
        .where(
            *base,
            instances.c.state.in_((InstanceState.COMPLETED.value, InstanceState.FAILED.value)),
        )
        .order_by(instances.c.id.desc())
        .limit(1)
    ).first()
    if last is None:
        return ProcessActivity(int(active), None, None)
    return ProcessActivity(int(active), last[0], last[1])


def _window(
    workspace_id: str, since: datetime, process_name: str | None
) -> list[sa.ColumnElement[bool]]:
    conditions = [instances.c.workspace_id == workspace_id, instances.c.started_at >= since]
    if process_name is not None:
        conditions.append(instances.c.process_name == process_name)
    return conditions
