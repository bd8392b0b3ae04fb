"""Shared fixtures: an empty database for each test, on SQLite and on PostgreSQL.

PostgreSQL tests use the server in ``OPENSOP_TEST_POSTGRES_URL`` (any database on it; a
fresh one is created per test), else a local server at 127.0.0.1:5432 as user postgres.
Without either they are skipped, unless the variable is set: then an unreachable server
is an error. Database names are unique per test, so ``pytest -n N`` is safe.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from psycopg.rows import TupleRow

from opensop.store.database import Database, redact_url

POSTGRES_URL_ENV = "OPENSOP_TEST_POSTGRES_URL"
LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_connect(server: sa.URL) -> psycopg.Connection[TupleRow]:
    return psycopg.connect(
        server.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
    )


@pytest.fixture(scope="session")
def _postgres_server() -> sa.URL:
    """The PostgreSQL server to create test databases on (its maintenance database)."""
    configured = os.environ.get(POSTGRES_URL_ENV)
    server = sa.make_url(configured or LOCAL_POSTGRES_URL).set(drivername="postgresql")
    try:
        _admin_connect(server).close()
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL does not answer at {redact_url(server)}: {exc}".strip()
        if configured:
            pytest.fail(f"{reason} ({POSTGRES_URL_ENV} is set)", pytrace=False)
        pytest.skip(f"{reason}; start it or set {POSTGRES_URL_ENV}")
    return server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL for a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'opensop.db'}"


@pytest.fixture
def postgres_url(_postgres_server: sa.URL) -> Iterator[str]:
    """A URL for a new, empty PostgreSQL database, dropped after the test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"opensop_test_{worker}_{uuid.uuid4().hex[:12]}"
    with _admin_connect(_postgres_server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _postgres_server.set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connect(_postgres_server) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each store in turn (test ids ``[sqlite]`` and ``[postgres]``)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated ``Database`` on each store in turn, disposed after the test."""
    db = Database(database_url)
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()
