"""Published process versions: immutable rows; the latest is the highest id per name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from opensop.store.tables import processes


@dataclass(frozen=True)
class ProcessRecord:
    id: int
    workspace_id: str
    name: str
    version: str
    definition: dict[str, Any]
    content_hash: str
    base_dir: str | None
    published_at: datetime


_COLUMNS = (
    processes.c.id,
    processes.c.workspace_id,
    processes.c.name,
    processes.c.version,
    processes.c.definition,
    processes.c.content_hash,
    processes.c.base_dir,
    processes.c.published_at,
)


def insert_process(
    conn: sa.Connection,
    *,
    workspace_id: str,
    name: str,
    version: str,
    definition: dict[str, Any],
    source: str,
    content_hash: str,
    base_dir: str | None,
    now: datetime,
) -> ProcessRecord:
    result = conn.execute(
        processes.insert().values(
            workspace_id=workspace_id,
            name=name,
            version=version,
            definition=definition,
            source=source,
            content_hash=content_hash,
            base_dir=base_dir,
            published_at=now,
        )
    )
    (process_id,) = result.inserted_primary_key or (None,)
    assert isinstance(process_id, int)
    return ProcessRecord(
        process_id, workspace_id, name, version, definition, content_hash, base_dir, now
    )


def find_version(
    conn: sa.Connection, workspace_id: str, name: str, version: str
) -> ProcessRecord | None:
    row = conn.execute(
        sa.select(*_COLUMNS).where(
            processes.c.workspace_id == workspace_id,
            processes.c.name == name,
            processes.c.version == version,
        )
    ).first()
    return _record(row) if row is not None else None


def find_latest(conn: sa.Connection, workspace_id: str, name: str) -> ProcessRecord | None:
    row = conn.execute(
        sa.select(*_COLUMNS)
        .where(processes.c.workspace_id == workspace_id, processes.c.name == name)
        .order_by(processes.c.id.desc())
        .limit(1)
    ).first()
    return _record(row) if row is not None else None


_LATEST_ID = (
    sa.select(processes.c.id)
    .where(
        processes.c.workspace_id == sa.bindparam("workspace_id"),
        processes.c.name == sa.bindparam("name"),
    )
    .order_by(processes.c.id.desc())
    .limit(1)
)


def find_latest_id(conn: sa.Connection, workspace_id: str, name: str) -> int | None:
    """Only the id: the hot path of start reads the definition from a cache."""
    value = conn.execute(_LATEST_ID, {"workspace_id": workspace_id, "name": name}).scalar()
    return int(value) if value is not None else None


def get_by_id(conn: sa.Connection, process_id: int) -> ProcessRecord:
    row = conn.execute(sa.select(*_COLUMNS).where(processes.c.id == process_id)).one()
    return _record(row)


def list_latest(conn: sa.Connection, workspace_id: str) -> list[ProcessRecord]:
    latest = (
        sa.select(sa.func.max(processes.c.id))
        .where(processes.c.workspace_id == workspace_id)
        .group_by(processes.c.name)
    )
    rows = conn.execute(
        sa.select(*_COLUMNS).where(processes.c.id.in_(latest)).order_by(processes.c.name)
    )
    return [_record(row) for row in rows]


def _record(row: sa.Row[Any, Any, Any, Any, Any, Any, Any, Any]) -> ProcessRecord:
    m = row._mapping
    return ProcessRecord(
        id=m["id"],
        workspace_id=m["workspace_id"],
        name=m["name"],
        version=m["version"],
        definition=m["definition"],
        content_hash=m["content_hash"],
        base_dir=m["base_dir"],
        published_at=m["published_at"],
    )
