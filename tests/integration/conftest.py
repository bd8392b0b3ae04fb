"""Real ``opensop serve`` processes, one per store, shared by a whole test session.

Each xdist worker starts its own pair (SQLite in a temp file, PostgreSQL in a fresh
database) with ``examples/`` loaded and a known bootstrap admin token. Tests register
their own processes under unique names, so they never interfere on a shared server.

``script_server`` is one more (SQLite) whose `run:` scripts resolve under ``script_root``
(OPENSOP_PROCESS_DIR): a test writes its scripts into a folder of its own there and
registers a process whose `run:` paths start with that folder's name.
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


@pytest.fixture(scope="session")
def script_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where ``script_server`` finds `run:` scripts."""
    return tmp_path_factory.mktemp("scripts")


@pytest.fixture(scope="session")
def script_server(tmp_path_factory: pytest.TempPathFactory, script_root: Path) -> Iterator[Server]:
    """A SQLite server running scripts from ``script_root``.

    Its environment also holds OPENSOP_DATABASE_URL (the same store as the flag), so a
    test can check that scripts never see it.
    """
    url = f"sqlite:///{tmp_path_factory.mktemp('script-server') / 'opensop.db'}"
    env = {"OPENSOP_PROCESS_DIR": str(script_root), "OPENSOP_DATABASE_URL": url}
    with running_server(url, env=env) as server:
        yield server


@pytest.fixture
def script_client(script_server: Server) -> Iterator[httpx.Client]:
    with script_server.client() as admin:
        yield admin


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
