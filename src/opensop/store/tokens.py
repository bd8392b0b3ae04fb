"""Token rows: stored hashed, looked up by hash, revoked by time stamp."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from opensop.store.prepared import Prepared
from opensop.store.tables import tokens, workspaces


@dataclass(frozen=True)
class TokenRecord:
    id: str
    workspace_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def ensure_workspace(conn: sa.Connection, workspace_id: str, now: datetime) -> None:
    """Create the workspace unless it exists; safe when two callers race to create it."""
    exists = conn.execute(sa.select(workspaces.c.id).where(workspaces.c.id == workspace_id)).first()
    if exists is not None:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(workspaces)
        .values(id=workspace_id, name=workspace_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["id"])
    )


def insert_token(
    conn: sa.Connection,
    *,
    token_id: str,
    workspace_id: str,
    name: str,
    prefix: str,
    secret_hash: str,
    scopes: list[str],
    now: datetime,
) -> TokenRecord:
    conn.execute(
        tokens.insert().values(
            id=token_id,
            workspace_id=workspace_id,
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            scopes=scopes,
            created_at=now,
        )
    )
    return TokenRecord(token_id, workspace_id, name, prefix, tuple(scopes), now, None, None)


# Built once: every request authenticates, and building a statement costs more than
# running it.
_LIVE_TOKEN = Prepared(
    sa.select(tokens).where(
        tokens.c.secret_hash == sa.bindparam("secret_hash"), tokens.c.revoked_at.is_(None)
    )
)


def find_live_token(conn: sa.Connection, secret_hash: str) -> TokenRecord | None:
    """The unrevoked token with this hash (the hash is unique and indexed)."""
    row = _LIVE_TOKEN.first(conn, {"secret_hash": secret_hash})
    return _record(row) if row is not None else None


def find_token(conn: sa.Connection, secret_hash: str) -> TokenRecord | None:
    """The token with this hash, revoked or not."""
    row = conn.execute(sa.select(tokens).where(tokens.c.secret_hash == secret_hash)).first()
    return _record(row._mapping) if row is not None else None


def list_tokens(conn: sa.Connection, workspace_id: str) -> list[TokenRecord]:
    rows = conn.execute(
        sa.select(tokens)
        .where(tokens.c.workspace_id == workspace_id, tokens.c.revoked_at.is_(None))
        .order_by(tokens.c.id)
    )
    return [_record(row._mapping) for row in rows]


def revoke_token(conn: sa.Connection, workspace_id: str, token_id: str, now: datetime) -> bool:
    result = conn.execute(
        tokens.update()
        .where(
            tokens.c.id == token_id,
            tokens.c.workspace_id == workspace_id,
            tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return result.rowcount == 1


def touch_token(conn: sa.Connection, token_id: str, now: datetime) -> None:
    conn.execute(tokens.update().where(tokens.c.id == token_id).values(last_used_at=now))


def _record(m: Mapping[Any, Any]) -> TokenRecord:
    return TokenRecord(
        id=m["id"],
        workspace_id=m["workspace_id"],
        name=m["name"],
        prefix=m["prefix"],
        scopes=tuple(m["scopes"]),
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
    )
