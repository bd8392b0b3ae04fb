"""Connection setup for SQLite, the embedded default. No queries live here.

Every connection runs in WAL mode (readers never block the writer), with foreign keys
on, a 10 s busy timeout and temporary storage in memory (statement and savepoint journals
never become files). Python's sqlite3 module is told to keep out of transaction
control (``isolation_level = None``) and SQLAlchemy's ``begin`` event emits the BEGIN
instead, choosing its kind from the connection's ``opensop_sqlite_mode`` execution option:

- ``write`` (the default): ``BEGIN IMMEDIATE`` takes the write lock up front. A deferred
  transaction that reads and then writes cannot wait for the lock: if another writer
  committed meanwhile, SQLite fails it at once with "database is locked", whatever the
  busy timeout. Taking the lock at BEGIN makes writers queue on the busy timeout instead.
- ``read``: a plain (deferred) ``BEGIN`` and ``PRAGMA query_only``: a consistent snapshot
  that never takes the write lock, and fails loudly if it tries to write.
- ``migrate``: like ``write`` with foreign keys off, as SQLite requires while Alembic's
  batch mode rebuilds a table that other tables reference.

Connection-level pragmas can only change outside a transaction, so the ``begin`` hook sets
them just before BEGIN, remembering the current values on the pooled connection.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

SqliteMode = Literal["write", "read", "migrate"]

MODE_OPTION: Final = "opensop_sqlite_mode"
READ_OPTIONS: Final[Mapping[str, Any]] = {MODE_OPTION: "read"}
MIGRATE_OPTIONS: Final[Mapping[str, Any]] = {MODE_OPTION: "migrate"}

SYNCHRONOUS_LEVELS: Final = ("FULL", "NORMAL")
BUSY_TIMEOUT_SECONDS: Final = 10.0

_PRAGMAS_KEY: Final = "opensop_sqlite_pragmas"


def create_engine(
    url: str | URL,
    *,
    synchronous: str = "FULL",
    pool_size: int = 5,
    max_overflow: int = 10,
    echo: bool = False,
) -> Engine:
    """An engine for a ``sqlite:///path`` URL; the file's folder is created if missing.

    ``synchronous`` is ``FULL`` (every commit survives power loss) or ``NORMAL`` (a
    commit may be lost on power loss, never corrupted; much faster on slow disks).
    """
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() != "sqlite" or sa_url.get_driver_name() != "pysqlite":
        raise ValueError(f"not a sqlite:/// URL: {sa_url.drivername}://...")
    level = synchronous.upper()
    if level not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"sqlite synchronous must be one of {SYNCHRONOUS_LEVELS}, got {level!r}")
    database = sa_url.database or ""
    if database in ("", ":memory:") or sa_url.query.get("mode") == "memory":
        raise ValueError(
            "SQLite needs a file (sqlite:///path/to/opensop.db): an in-memory database is "
            "private to one connection, so a pool of them would not share data"
        )
    Path(database).parent.mkdir(parents=True, exist_ok=True)

    engine = sa.create_engine(
        sa_url,
        poolclass=sa.QueuePool,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS},
        echo=echo,
    )
    sa.event.listen(engine, "connect", _connect_hook(level))
    sa.event.listen(engine, "begin", _begin)
    return engine


def _connect_hook(synchronous: str) -> Callable[[DBAPIConnection, ConnectionPoolEntry], None]:
    def on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        conn = cast(sqlite3.Connection, dbapi_connection)
        # Transactions are begun by _begin; sqlite3 must not emit its own BEGIN. That is
        # isolation_level None under "legacy transaction control", which Python 3.12+
        # calls by name and a future Python may stop defaulting to: pin it when it exists.
        if sys.version_info >= (3, 12):
            conn.autocommit = sqlite3.LEGACY_TRANSACTION_CONTROL
        conn.isolation_level = None
        timeout_ms = int(BUSY_TIMEOUT_SECONDS * 1000)
        conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        (journal_mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(journal_mode).lower() != "wal":
            raise RuntimeError(
                f"SQLite refused WAL mode (journal_mode={journal_mode}); the database "
                "must be on a local file system"
            )
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA query_only = OFF")
        record.info[_PRAGMAS_KEY] = {"foreign_keys": True, "query_only": False}

    return on_connect


def _begin(conn: Connection) -> None:
    mode = cast(SqliteMode, conn.get_execution_options().get(MODE_OPTION, "write"))
    if mode not in ("write", "read", "migrate"):
        raise ValueError(f"unknown {MODE_OPTION} {mode!r}")
    driver = driver_of(conn)
    if driver.in_transaction:
        # The group-commit writer began this write transaction on the driver; a Core
        # statement inside it is what made SQLAlchemy begin (see store/writer.py).
        if mode != "write":
            raise RuntimeError(f"a {mode} transaction cannot join a write transaction")
        return
    apply_mode(conn, mode)
    driver.execute("BEGIN" if mode == "read" else "BEGIN IMMEDIATE")


def apply_mode(conn: Connection, mode: SqliteMode) -> None:
    """Set the connection-level pragmas of ``mode``, outside any transaction.

    A connection that begins its transactions itself (the group-commit writer) calls
    this once with ``write``: a pooled connection may come back from serving reads.
    """
    wanted = {"foreign_keys": mode != "migrate", "query_only": mode == "read"}
    current: dict[str, bool] = conn.connection.info.setdefault(_PRAGMAS_KEY, {})
    # Straight on the driver connection: every transaction begins here, and a full
    # SQLAlchemy execute of these statements costs more than running them.
    driver = driver_of(conn)
    for pragma, on in wanted.items():
        if current.get(pragma) != on:
            driver.execute(f"PRAGMA {pragma} = {'ON' if on else 'OFF'}")
            current[pragma] = on


def driver_of(conn: Connection) -> sqlite3.Connection:
    """The sqlite3 connection under a SQLAlchemy connection to SQLite."""
    return cast(sqlite3.Connection, conn.connection.driver_connection)
