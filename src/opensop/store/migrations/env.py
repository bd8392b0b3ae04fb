"""Alembic environment for OpenSOP's schema.

There is no alembic.ini: ``opensop.store.database`` builds the config in code and hands
over a connection already inside its migration transaction (``Database.migrate()``, or
``alembic_config(connection)`` to run other Alembic commands, such as autogenerating a
revision). Migrations are rendered in batch mode so the same script alters SQLite tables
by rebuilding them and PostgreSQL tables in place.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from opensop.store.tables import metadata
from opensop.store.types import UTCDateTime


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our column types as plain SQLAlchemy ones, so migrations stay frozen in time
    and never import application code."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; use Database.migrate()")
connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "run migrations through opensop.store.database: Database.migrate(), or "
        "alembic_config(connection) for other Alembic commands"
    )
run_migrations(connection)
