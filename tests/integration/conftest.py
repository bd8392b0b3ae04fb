"""Real ``opensop serve`` processes, one per store, shared by a whole test session.

Each xdist worker starts its own pair (SQLite in a temp file, PostgreSQL in a fresh
database) with ``examples/`` loaded and a known bootstrap admin token. Tests register
their own processes under unique names, so they never interfere on a shared server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.support.databases import fresh_postgres_database
from tests.support.server import EXAMPLES, Server, running_server


@pytest.fixture(scope="session")
def server_on_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path: Path = tmp_path_factory.mktemp("server-sqlite") / "opensop.db"
    with running_server(f"sqlite:///{path}", load=[EXAMPLES]) as server:
        yield server


@pytest.fixture(scope="session")
def server_on_postgres(_postgres_server: sa.URL) -> Iterator[Server]:
    with (
        fresh_postgres_database(_postgres_server, "api") as url,
        running_server(url, load=[EXAMPLES]) as server,
    ):
        yield server


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def server(request: pytest.FixtureRequest) -> Server:
    """The server on each store in turn (test ids ``[sqlite]`` and ``[postgres]``)."""
    running: Server = request.getfixturevalue(f"server_on_{request.param}")
    return running


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    """An admin client on each store in turn."""
    with server.client() as admin:
        yield admin


@pytest.fixture
def sqlite_client(server_on_sqlite: Server) -> Iterator[httpx.Client]:
    """An admin client on the SQLite server, for behaviour that does not depend on the store."""
    with server_on_sqlite.client() as admin:
        yield admin
