"""Fresh databases that outlive one test (for servers shared by a module or session).

The per-test ``sqlite_url``/``postgres_url`` fixtures live in ``tests/conftest.py``; this
is the same recipe for longer scopes.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import sqlalchemy as sa
from psycopg import sql


def _admin(server: sa.URL) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        server.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
    )


@contextlib.contextmanager
def fresh_postgres_database(server: sa.URL, label: str) -> Iterator[str]:
    """A new, empty database on ``server``, dropped (even with open connections) after."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"opensop_{label}_{worker}_{uuid.uuid4().hex[:10]}"
    with _admin(server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin(server) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
