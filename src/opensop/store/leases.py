"""Worker leases on automated steps: who may complete a step, and until when.

A step waiting for a worker is claimable when it has no live lease and its retry
backoff (``due_at``) is over. A lease lives in the step's row; any change to the step
(submit, fail, cancel) clears it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from opensop.engine.states import StepState, SubState
from opensop.store.prepared import Prepared
from opensop.store.tables import instances, steps
from opensop.store.types import UTCDateTime


@dataclass(frozen=True)
class ClaimedStep:
    instance_id: str
    step_id: str
    process_name: str
    process_version: str
    inputs: dict[str, Any] | None
    attempt: int
    lease_token: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class Lease:
    token: str
    expires_at: datetime


def _claimable(workspace_id: Any, now: Any) -> list[sa.ColumnElement[bool]]:
    return [
        steps.c.workspace_id == workspace_id,
        steps.c.state == StepState.ACTIVE.value,
        steps.c.sub_state == SubState.WAITING_FOR_WORKER.value,
        sa.or_(steps.c.lease_expires_at.is_(None), steps.c.lease_expires_at <= now),
        sa.or_(steps.c.due_at.is_(None), steps.c.due_at <= now),
    ]


def pending(conn: sa.Connection, workspace_id: str, now: datetime, limit: int) -> list[Any]:
    """Steps a worker could take now: no live lease, backoff over."""
    return list(
        conn.execute(
            sa.select(steps.c.instance_id, steps.c.step_id, steps.c.process_name, steps.c.inputs)
            .where(*_claimable(workspace_id, now))
            .order_by(steps.c.instance_id, steps.c.position)
            .limit(limit)
        )
    )


# Guarded again by the claimable conditions: a concurrent claim on PostgreSQL under READ
# COMMITTED must not take the same step twice. Built once: a claim runs it per step.
_TAKE = Prepared(
    steps.update()
    .where(
        steps.c.instance_id == sa.bindparam("key_instance"),
        steps.c.step_id == sa.bindparam("key_step"),
        *_claimable(sa.bindparam("key_workspace"), sa.bindparam("key_now", type_=UTCDateTime())),
    )
    .values(
        lease_owner=sa.bindparam("worker"),
        lease_token=sa.bindparam("token"),
        lease_expires_at=sa.bindparam("until", type_=UTCDateTime()),
    )
)


def claim(
    conn: sa.Connection,
    *,
    workspace_id: str,
    worker: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    process_name: str | None,
    step_ids: list[str] | None,
) -> list[ClaimedStep]:
    conditions = _claimable(workspace_id, now)
    if process_name is not None:
        conditions.append(steps.c.process_name == process_name)
    if step_ids:
        conditions.append(steps.c.step_id.in_(step_ids))
    query = (
        sa.select(
            steps.c.instance_id,
            steps.c.step_id,
            steps.c.process_name,
            instances.c.process_version,
            steps.c.inputs,
            steps.c.attempt,
        )
        .select_from(steps.join(instances, steps.c.instance_id == instances.c.id))
        .where(*conditions)
        .order_by(steps.c.instance_id, steps.c.position)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=steps)
    claimed: list[ClaimedStep] = []
    for instance_id, step_id, process, version, inputs, attempt in conn.execute(query).all():
        token = secrets.token_urlsafe(24)
        taken = _TAKE.execute(
            conn,
            {
                "key_instance": instance_id,
                "key_step": step_id,
                "key_workspace": workspace_id,
                "key_now": now,
                "worker": worker,
                "token": token,
                "until": lease_until,
            },
        )
        if taken == 1:
            claimed.append(
                ClaimedStep(
                    instance_id, step_id, process, version, inputs, attempt, token, lease_until
                )
            )
    return claimed


def extend(
    conn: sa.Connection, workspace_id: str, token: str, now: datetime, lease_until: datetime
) -> bool:
    result = conn.execute(
        steps.update()
        .where(
            steps.c.workspace_id == workspace_id,
            steps.c.lease_token == token,
            steps.c.lease_expires_at > now,
            steps.c.state == StepState.ACTIVE.value,
        )
        .values(lease_expires_at=lease_until)
    )
    return result.rowcount == 1
