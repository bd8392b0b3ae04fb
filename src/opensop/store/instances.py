"""Instances, their steps and their events: read whole, written as one transition."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from opensop.engine.records import Event, InstanceRun, StepRun, Transition
from opensop.engine.states import InstanceState, StepState, SubState
from opensop.store import jobs as job_store
from opensop.store.leases import Lease
from opensop.store.prepared import Prepared
from opensop.store.tables import events, instances, steps


@dataclass(frozen=True)
class StoredInstance:
    run: InstanceRun
    process_id: int
    revision: int
    request_hash: str | None
    leases: dict[str, Lease] = field(default_factory=dict)  # worker leases, by step id


@dataclass(frozen=True)
class InstanceSummary:
    id: str
    process_name: str
    process_version: str
    state: str
    started_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class PendingWork:
    instance_id: str
    step_id: str
    process_name: str
    inputs: dict[str, Any] | None


@dataclass(frozen=True)
class NewInstanceRows:
    """The rows that record a new instance, built before the write transaction so the
    write lock covers only the inserts."""

    instance: dict[str, Any]
    steps: list[dict[str, Any]]
    events: list[dict[str, Any]]
    jobs: list[dict[str, Any]]


_INSERT_INSTANCE = Prepared(instances.insert())
_INSERT_STEPS = Prepared(steps.insert())
_INSERT_EVENTS = Prepared(events.insert())


def new_instance_rows(
    transition: Transition,
    *,
    process_id: int,
    idempotency_key: str | None,
    request_hash: str | None,
    now: datetime,
) -> NewInstanceRows:
    run = transition.instance
    instance = {
        "id": run.id,
        "workspace_id": run.workspace_id,
        "process_id": process_id,
        "process_name": run.process_name,
        "process_version": run.process_version,
        "state": run.state.value,
        "inputs": run.inputs,
        "outputs": run.outputs,
        "metadata": run.metadata,
        "error": run.error,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "updated_at": now,
        "revision": 1,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "parent_instance_id": None,
        "parent_step_id": None,
        "trigger_payload": run.trigger_payload,
    }
    return NewInstanceRows(
        instance,
        [_step_row(run, step) for step in run.step_runs()],
        _event_rows(run, transition.events, now),
        job_store.job_rows(run.workspace_id, run.id, transition.jobs, now),
    )


def insert_instance(conn: sa.Connection, rows: NewInstanceRows) -> None:
    _INSERT_INSTANCE.execute(conn, rows.instance)
    _INSERT_STEPS.execute_many(conn, rows.steps)
    _INSERT_EVENTS.execute_many(conn, rows.events)
    job_store.enqueue(conn, rows.jobs)


def save_transition(
    conn: sa.Connection, stored: StoredInstance, transition: Transition, now: datetime
) -> None:
    """Write what the transition changed; the caller holds the instance's write lock."""
    run = transition.instance
    changed_rows = _UPDATE_INSTANCE.execute(
        conn,
        {
            "key_id": run.id,
            "key_revision": stored.revision,
            "state": run.state.value,
            "outputs": run.outputs,
            "error": run.error,
            "completed_at": run.completed_at,
            "updated_at": now,
            "revision": stored.revision + 1,
        },
    )
    if changed_rows != 1:  # pragma: no cover - the write lock makes this impossible
        raise RuntimeError(f"instance {run.id} changed under a held lock")
    changed = sorted(transition.changed_steps, key=lambda s: run.steps[s].position)
    if changed:
        _UPDATE_STEP.execute_many(
            conn,
            [
                {
                    "key_instance": run.id,
                    "key_step": step_id,
                    **_step_values(run.steps[step_id]),
                    **_NO_LEASE,
                }
                for step_id in changed
            ],
        )
    _insert_events(conn, run, transition.events, now)
    job_store.enqueue(conn, job_store.job_rows(run.workspace_id, run.id, transition.jobs, now))


_UPDATE_INSTANCE = Prepared(
    instances.update().where(
        instances.c.id == sa.bindparam("key_id"),
        instances.c.revision == sa.bindparam("key_revision"),
    )
)
# Any change to a step ends a worker's lease on it: the work it was leased for is over.
_UPDATE_STEP = Prepared(
    steps.update().where(
        steps.c.instance_id == sa.bindparam("key_instance"),
        steps.c.step_id == sa.bindparam("key_step"),
    )
)
_SELECT_INSTANCE = sa.select(instances).where(
    instances.c.id == sa.bindparam("id"), instances.c.workspace_id == sa.bindparam("workspace_id")
)
_INSTANCE = Prepared(_SELECT_INSTANCE)
_INSTANCE_FOR_UPDATE = Prepared(_SELECT_INSTANCE.with_for_update())
_STEPS_OF = Prepared(
    sa.select(steps)
    .where(steps.c.instance_id == sa.bindparam("instance_id"))
    .order_by(steps.c.position)
)


def load_instance(
    conn: sa.Connection, workspace_id: str, instance_id: str, *, for_update: bool = False
) -> StoredInstance | None:
    query = _INSTANCE_FOR_UPDATE if for_update else _INSTANCE
    m = query.first(conn, {"id": instance_id, "workspace_id": workspace_id})
    if m is None:
        return None
    step_rows = _STEPS_OF.rows(conn, {"instance_id": instance_id})
    step_runs = {r["step_id"]: _step_run(r) for r in step_rows}
    leases = {
        r["step_id"]: Lease(r["lease_token"], r["lease_expires_at"])
        for r in step_rows
        if r["lease_token"] is not None and r["lease_expires_at"] is not None
    }
    run = InstanceRun(
        id=m["id"],
        workspace_id=m["workspace_id"],
        process_name=m["process_name"],
        process_version=m["process_version"],
        state=InstanceState(m["state"]),
        inputs=m["inputs"],
        started_at=m["started_at"],
        steps=step_runs,
        outputs=m["outputs"],
        metadata=m["metadata"],
        error=m["error"],
        completed_at=m["completed_at"],
        trigger_payload=m["trigger_payload"],
    )
    return StoredInstance(run, m["process_id"], m["revision"], m["request_hash"], leases)


def find_by_idempotency_key(conn: sa.Connection, workspace_id: str, key: str) -> str | None:
    value = conn.execute(
        sa.select(instances.c.id).where(
            instances.c.workspace_id == workspace_id, instances.c.idempotency_key == key
        )
    ).scalar()
    return str(value) if value is not None else None


def list_instances(
    conn: sa.Connection,
    workspace_id: str,
    *,
    process_name: str | None,
    state: str | None,
    limit: int,
    offset: int,
    before_id: str | None,
) -> tuple[list[InstanceSummary], int]:
    """Newest first. ``before_id`` is the keyset cursor: rows older than that id."""
    conditions = [instances.c.workspace_id == workspace_id]
    if process_name is not None:
        conditions.append(instances.c.process_name == process_name)
    if state is not None:
        conditions.append(instances.c.state == state)
    total = conn.execute(
        sa.select(sa.func.count()).select_from(instances).where(*conditions)
    ).scalar_one()
    if before_id is not None:
        conditions.append(instances.c.id < before_id)
    rows = conn.execute(
        sa.select(
            instances.c.id,
            instances.c.process_name,
            instances.c.process_version,
            instances.c.state,
            instances.c.started_at,
            instances.c.completed_at,
        )
        .where(*conditions)
        .order_by(instances.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [InstanceSummary(*row) for row in rows], int(total)


def instance_events(conn: sa.Connection, instance_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(
            events.c.id,
            events.c.step_id,
            events.c.type,
            events.c.actor,
            events.c.data,
            events.c.created_at,
        )
        .where(events.c.instance_id == instance_id)
        .order_by(events.c.id)
    )
    return [dict(row._mapping) for row in rows]


def _insert_events(
    conn: sa.Connection, run: InstanceRun, new_events: list[Event], now: datetime
) -> None:
    _INSERT_EVENTS.execute_many(conn, _event_rows(run, new_events, now))


def _event_rows(run: InstanceRun, new_events: list[Event], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "workspace_id": run.workspace_id,
            "instance_id": run.id,
            "step_id": event.step_id,
            "type": event.type,
            "actor": event.actor,
            "data": event.data,
            "created_at": now,
        }
        for event in new_events
    ]


def _step_values(step: StepRun) -> dict[str, Any]:
    return {
        "state": step.state.value,
        "sub_state": step.sub_state.value if step.sub_state else None,
        "inputs": step.inputs,
        "outputs": step.outputs,
        "decided_by": step.decided_by,
        "confidence": step.confidence,
        "attempt": step.attempt,
        "error": step.error,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
        "due_at": step.due_at,
        "stderr": step.stderr,
    }


_NO_LEASE = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}


def _step_row(run: InstanceRun, step: StepRun) -> dict[str, Any]:
    return {
        "instance_id": run.id,
        "step_id": step.step_id,
        "position": step.position,
        "type": step.type,
        "workspace_id": run.workspace_id,
        "process_name": run.process_name,
        **_step_values(step),
    }


def _step_run(m: Any) -> StepRun:
    return StepRun(
        step_id=m["step_id"],
        position=m["position"],
        type=m["type"],
        state=StepState(m["state"]),
        sub_state=SubState(m["sub_state"]) if m["sub_state"] else None,
        inputs=m["inputs"],
        outputs=m["outputs"],
        decided_by=m["decided_by"],
        confidence=m["confidence"],
        attempt=m["attempt"],
        error=m["error"],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        due_at=m["due_at"],
        stderr=m["stderr"],
    )
