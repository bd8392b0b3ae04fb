"""The durable job queue: rows written with the transitions that need them, claimed by
runners under a lease, finished in the same transaction as the result they produce.

Claiming takes due jobs whose state is queued, or leased with an expired lease (the
runner that held it died, or handed the job back when it stopped). On PostgreSQL claims
use FOR UPDATE SKIP LOCKED so runners never wait on each other; on SQLite the single
writer serializes them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from opensop.engine.jobs import JobKind, JobRequest, JobState
from opensop.store.tables import jobs


@dataclass(frozen=True)
class Job:
    id: int
    workspace_id: str
    instance_id: str | None
    step_id: str | None
    kind: JobKind
    payload: dict[str, Any]
    due_at: datetime
    attempt: int
    lease_owner: str
    lease_token: str


def job_rows(
    workspace_id: str, instance_id: str | None, requests: list[JobRequest], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "workspace_id": workspace_id,
            "instance_id": instance_id,
            "step_id": request.step_id,
            "kind": request.kind.value,
            "payload": request.payload,
            "due_at": request.due_at,
            "state": JobState.QUEUED.value,
            "attempt": 0,
            "created_at": now,
            "dedup_key": request.dedup_key,
        }
        for request in requests
    ]


def enqueue(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert jobs; one whose dedup_key is already queued is dropped, not duplicated."""
    if not rows:
        return
    plain = [row for row in rows if row["dedup_key"] is None]
    keyed = [row for row in rows if row["dedup_key"] is not None]
    if plain:
        conn.execute(jobs.insert(), plain)
    if keyed:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(jobs).on_conflict_do_nothing(index_elements=["dedup_key"]), keyed)


def claim_due(
    conn: sa.Connection, *, owner: str, now: datetime, lease_until: datetime, limit: int
) -> list[Job]:
    claimable = sa.or_(
        jobs.c.state == JobState.QUEUED.value,
        sa.and_(jobs.c.state == JobState.LEASED.value, jobs.c.lease_expires_at < now),
    )
    query = (
        sa.select(jobs.c.id)
        .where(jobs.c.due_at <= now, claimable)
        .order_by(jobs.c.due_at, jobs.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = [row[0] for row in conn.execute(query)]
    if not ids:
        return []
    token = secrets.token_hex(8)
    conn.execute(
        jobs.update()
        .where(jobs.c.id.in_(ids))
        .values(
            state=JobState.LEASED.value,
            lease_owner=f"{owner}/{token}",
            lease_expires_at=lease_until,
            attempt=jobs.c.attempt + 1,
        )
    )
    rows = conn.execute(sa.select(jobs).where(jobs.c.id.in_(ids)).order_by(jobs.c.due_at))
    return [
        Job(
            id=row.id,
            workspace_id=row.workspace_id,
            instance_id=row.instance_id,
            step_id=row.step_id,
            kind=JobKind(row.kind),
            payload=row.payload or {},
            due_at=row.due_at,
            attempt=row.attempt,
            lease_owner=row.lease_owner,
            lease_token=token,
        )
        for row in rows
    ]


def finish(conn: sa.Connection, job: Job) -> bool:
    """Mark the job done if this runner still holds it; False when its lease was lost."""
    result = conn.execute(
        jobs.update()
        .where(jobs.c.id == job.id, jobs.c.lease_owner == job.lease_owner)
        .values(state=JobState.DONE.value, lease_expires_at=None)
    )
    return result.rowcount == 1


def note_error(conn: sa.Connection, job: Job, error: str) -> None:
    conn.execute(jobs.update().where(jobs.c.id == job.id).values(last_error=error[:2000]))


def give_up(conn: sa.Connection, job: Job, error: str) -> None:
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job.id, jobs.c.lease_owner == job.lease_owner)
        .values(state=JobState.FAILED.value, last_error=error[:2000], lease_expires_at=None)
    )


def release(conn: sa.Connection, job: Job, error: str, due_at: datetime) -> None:
    """Put the job back in the queue for another try at ``due_at``."""
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job.id, jobs.c.lease_owner == job.lease_owner)
        .values(
            state=JobState.QUEUED.value,
            last_error=error[:2000],
            due_at=due_at,
            lease_owner=None,
            lease_expires_at=None,
        )
    )


def hand_back(conn: sa.Connection, job: Job, now: datetime) -> bool:
    """End this runner's lease now, so any runner can claim the job at once; False when
    the lease was already lost or the job finished.

    The job stays leased: claiming takes it as it takes the job of a runner that died.
    """
    result = conn.execute(
        jobs.update()
        .where(
            jobs.c.id == job.id,
            jobs.c.lease_owner == job.lease_owner,
            jobs.c.state == JobState.LEASED.value,
        )
        .values(lease_expires_at=now)
    )
    return result.rowcount == 1


def extend(conn: sa.Connection, job: Job, lease_until: datetime) -> bool:
    result = conn.execute(
        jobs.update()
        .where(jobs.c.id == job.id, jobs.c.lease_owner == job.lease_owner)
        .values(lease_expires_at=lease_until)
    )
    return result.rowcount == 1


_NEXT_QUEUED = sa.select(sa.func.min(jobs.c.due_at)).where(jobs.c.state == JobState.QUEUED.value)
_NEXT_LEASE_END = sa.select(sa.func.min(jobs.c.lease_expires_at)).where(
    jobs.c.state == JobState.LEASED.value
)


def next_due_at(conn: sa.Connection) -> datetime | None:
    """When the earliest queued or leased job can next be claimed."""
    queued = conn.execute(_NEXT_QUEUED).scalar()
    leased = conn.execute(_NEXT_LEASE_END).scalar()
    moments = [m for m in (queued, leased) if m is not None]
    return min(moments) if moments else None


def queued_schedule_tick(
    conn: sa.Connection, workspace_id: str, process_name: str
) -> datetime | None:
    """When the next schedule tick of a process is due, if one is queued."""
    value = conn.execute(
        sa.select(sa.func.min(jobs.c.due_at)).where(
            jobs.c.workspace_id == workspace_id,
            jobs.c.kind == JobKind.SCHEDULE_TICK.value,
            jobs.c.state.in_((JobState.QUEUED.value, JobState.LEASED.value)),
            jobs.c.payload["process"].as_string() == process_name,
        )
    ).scalar()
    return value if isinstance(value, datetime) else None
