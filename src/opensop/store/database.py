"""The store's entry point: a ``Database`` built from a URL, for SQLite or PostgreSQL.

    db = Database("sqlite:///var/opensop.db")
    db.migrate()
    with db.write() as conn:  # one transaction; on SQLite it holds the write lock
        conn.execute(tables.workspaces.insert().values(...))
    with db.read() as conn:  # a read-only snapshot that never blocks writers
        rows = conn.execute(sa.select(tables.workspaces)).all()
    db.dispose()

The dialect modules only set connections up; every query is written once, in Core,
against ``opensop.store.tables``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Connection, Engine

from opensop.store import postgres, sqlite
from opensop.store.writer import GroupCommitWriter

T = TypeVar("T")

log = logging.getLogger("opensop.store")

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")

# pg_advisory_xact_lock key held while migrating, so servers starting together take turns.
_MIGRATION_LOCK_KEY: Final = 0x0905_0907_0001

_SECRET_QUERY: Final = re.compile(r"([?&](?:password|sslpassword)=)[^&]*", re.IGNORECASE)

DialectName = Literal["sqlite", "postgresql"]


class Database:
    """Engine, transactions and migrations for one database URL.

    ``sqlite:///path`` or ``postgresql://user:password@host/db`` (``postgres://`` and
    ``postgresql+psycopg://`` are accepted too). ``sqlite_synchronous`` is ``FULL`` or
    ``NORMAL``; it is ignored on PostgreSQL.
    """

    engine: Engine
    dialect: DialectName

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self._redacted_url = redact_url(url)
        self._read_options: Mapping[str, Any]
        self._migrate_options: Mapping[str, Any]
        self._writer: GroupCommitWriter | None
        self.dialect = dialect_of(url)
        if self.dialect == "sqlite":
            self.engine = sqlite.create_engine(url, synchronous=sqlite_synchronous)
            self._read_options = sqlite.READ_OPTIONS
            self._migrate_options = sqlite.MIGRATE_OPTIONS
            self._writer = GroupCommitWriter(self.engine)
        else:
            self.engine = postgres.create_engine(url)
            self._read_options = postgres.READ_OPTIONS
            self._migrate_options = {}
            self._writer = None

    def __repr__(self) -> str:
        return f"Database({self._redacted_url!r})"

    def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction and return its result once committed.

        On SQLite the work joins the group-commit writer (one transaction and one fsync
        for every unit queued meanwhile, each unit in its own savepoint); on PostgreSQL
        it runs in its own transaction from the pool. Either way an exception raised by
        ``work`` rolls back exactly what ``work`` did, and reaches the caller.
        """
        if self._writer is not None:
            if self._writer.current() is not None:  # in a call_writing action
                with self._writer.nested() as conn:
                    return work(conn)
            return self._writer.run(work)
        with self.write() as conn:
            return work(conn)

    def write_soon(self, work: Callable[[Connection], object]) -> None:
        """Write ``work`` without waiting for it, for advisory updates (a token's last
        use) that must never hold up, nor fail, the request that causes them: on SQLite
        it is queued for the writer (the write lock may be busy for seconds); on
        PostgreSQL it runs now. A failure is logged."""
        if self._writer is not None:
            self._writer.submit(work)
            return
        try:
            with self.write() as conn:
                work(conn)
        except sa.exc.SQLAlchemyError as error:
            log.warning("an advisory write failed: %s", error)

    async def call_writing(
        self,
        action: Callable[[], T],
        *,
        alone: bool = False,
        offload: Callable[[Callable[[], T]], Awaitable[T]] = asyncio.to_thread,
    ) -> T:
        """Run ``action`` (blocking code that reads and writes through this database)
        off the event loop, where its writes are cheapest, and await its result.

        On SQLite the whole action is one unit of the group-commit writer: its reads and
        writes share the unit's transaction, and the result arrives once that transaction
        is committed. A nested write that fails fails the whole action, caught or not
        (``GroupCommitWriter.nested``). The
        action must not block on anything but this database. ``alone`` says nothing else
        waits on the event loop: then, when the writer is idle, the unit runs inline on the
        loop's thread (``GroupCommitWriter.run_async``). On PostgreSQL the action runs in a
        worker thread (``offload``: the caller's thread pool), opening its own transactions.
        """
        if self._writer is not None:
            return await self._writer.run_async(lambda conn: action(), alone=alone)
        return await offload(action)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once what was written so far is committed: at once, unless
        this runs inside a ``call_writing`` action, whose transaction commits later (and
        drops the callback if the action fails)."""
        if self._writer is None or not self._writer.after_commit(callback):
            callback()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One read-write transaction: commits when the block ends, rolls back if it raises.

        On SQLite the write lock is taken at BEGIN, so concurrent writers queue (up to the
        busy timeout) instead of failing halfway through. So never nest ``write()`` on
        SQLite: the inner one would wait for the lock the outer one holds, then fail.
        """
        if self._writer is not None and self._writer.current() is not None:
            # In a call_writing action: join it instead of deadlocking on the lock.
            with self._writer.nested() as conn:
                yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read-only transaction: a consistent snapshot; writing in it is an error.

        On SQLite it begins deferred, so it never waits for or blocks the writer. Inside
        a ``call_writing`` action it reads in the action's own transaction instead.
        """
        inside = None if self._writer is None else self._writer.current()
        if inside is not None:
            yield inside
            return
        with self._connect(self._read_options) as conn, conn.begin():
            yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest migration; a no-op when it is already there.

        Runs in one transaction. On PostgreSQL an advisory lock makes concurrent callers
        take turns; on SQLite the write lock does, and foreign keys are off meanwhile so
        batch migrations can rebuild referenced tables, then checked before commit.
        """
        with self._connect(self._migrate_options) as conn, conn.begin():
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            command.upgrade(alembic_config(conn), "head")
            if self.dialect == "sqlite":
                violations = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if violations:
                    raise RuntimeError(
                        f"migration left rows that break foreign keys: {violations[:10]}"
                    )

    def dispose(self) -> None:
        """Close every pooled connection (and stop the SQLite writer thread, which starts
        again on the next write). The Database can still be used afterwards."""
        if self._writer is not None:
            self._writer.close()
            self._writer = GroupCommitWriter(self.engine)
        self.engine.dispose()

    @contextmanager
    def _connect(self, options: Mapping[str, Any]) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if options:
                conn.execution_options(**options)
            yield conn


def alembic_config(connection: Connection) -> Config:
    """An Alembic config for the packaged migrations, running on ``connection``.

    Built in code, so no alembic.ini is needed. To write a new migration against a
    database that is at head::

        with db.write() as conn:
            command.revision(alembic_config(conn), "add x", autogenerate=True)
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def redact_url(url: str | URL) -> str:
    """The URL with its password (and any password-like query parameter) masked, for logs."""
    try:
        text = sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        text = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))
    return _SECRET_QUERY.sub(r"\1***", text)


def dialect_of(url: str) -> DialectName:
    """Which store a URL names; ValueError (with the URL redacted) when it names none we
    support. Opens nothing."""
    backend = _backend_name(url)
    if backend == "sqlite":
        return "sqlite"
    if backend in ("postgresql", "postgres"):
        return "postgresql"
    raise ValueError(
        f"unsupported database URL {redact_url(url)}: "
        "use sqlite:///path/to/file.db or postgresql://user@host/dbname"
    )


def _backend_name(url: str) -> str:
    try:
        return sa.make_url(url).get_backend_name()
    except sa.exc.ArgumentError:
        raise ValueError(f"not a database URL: {redact_url(url)}") from None
