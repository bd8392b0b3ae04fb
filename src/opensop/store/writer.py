"""Group commit for SQLite: one writer thread, many units of work per transaction.

SQLite has one write lock per file. Letting every request thread fight for it through
the busy handler wastes CPU on retries and gives a long latency tail; committing each
request separately pays one fsync per request. Instead, request threads hand their unit
of work (a function of a connection) to one writer thread, which runs whatever has queued
up inside ONE transaction, each unit in its own SAVEPOINT, then commits once:

    requests ──units──▶ queue ──▶ writer: BEGIN IMMEDIATE
                                          SAVEPOINT; unit 1; RELEASE   (or ROLLBACK TO)
                                          SAVEPOINT; unit 2; RELEASE
                                          ...
                                          COMMIT  (one fsync for the batch)
             ◀──results or exceptions, only after the COMMIT──

A unit that raises is rolled back to its savepoint alone; its caller gets the exception
and the rest of the batch commits. A caller never sees a result before the batch holding
it is durable. Units must not block on anything but the database: they hold up the batch.

An event loop awaits a unit with ``run_async`` (no thread of its own blocks meanwhile).
When its caller knows it is alone (one request in flight) and the writer is idle, the
unit runs right there on the loop's thread instead, in its own transaction: handing it to
the writer thread and back costs more than the unit itself. It never waits for the write
lock there: if another process holds it, the unit goes to the writer thread after all.
Code running inside a unit finds its connection with ``current()``: it reads and writes
in the unit's transaction, and ``after_commit`` defers what must wait for durability
(waking a job runner, say) until the batch commits; a unit that fails drops them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy.engine import Connection, Engine

from opensop.store import sqlite
from opensop.store.sqlite import BUSY_TIMEOUT_SECONDS

log = logging.getLogger("opensop.store")

T = TypeVar("T")

MAX_BATCH = 256  # units per transaction; bounds how long one batch holds the lock


@dataclass
class _Unit:
    """A unit of work and how its caller hears the outcome: a thread's future, or an
    event loop's (completed from the writer thread through ``call_soon_threadsafe``)."""

    work: Callable[[Connection], Any]
    future: Future[Any] | None = None
    broken: BaseException | None = None  # a nested write failed: the unit cannot commit
    loop: asyncio.AbstractEventLoop | None = None
    awaited: asyncio.Future[Any] | None = None
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def succeeded(self, result: Any) -> None:
        for callback in self.after_commit:
            try:
                callback()
            except Exception:  # a wake-up that fails must not lose a committed result
                log.exception("after-commit callback failed")
        if self.future is not None:
            self.future.set_result(result)
        else:
            assert self.loop is not None and self.awaited is not None
            self.loop.call_soon_threadsafe(_settle, self.awaited, True, result)

    def failed(self, error: BaseException) -> None:
        if self.future is not None:
            self.future.set_exception(error)
        else:
            assert self.loop is not None and self.awaited is not None
            self.loop.call_soon_threadsafe(_settle, self.awaited, False, error)


def _log_failure(future: Future[Any]) -> None:
    if future.exception() is not None:
        log.warning("a write nobody waited for failed: %s", future.exception())


def _settle(awaited: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if awaited.cancelled():  # the caller went away; the unit's outcome stands
        return
    if ok:
        awaited.set_result(value)
    else:
        awaited.set_exception(value)


class _Running(threading.local):
    """What the writer thread is running now (always empty on other threads)."""

    unit: _Unit | None = None
    conn: Connection | None = None


_STOP = object()


class GroupCommitWriter:
    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Unit | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._running = _Running()
        # Whoever runs units holds this: the writer thread, or a caller running inline.
        self._conn_lock = threading.Lock()
        self._conn: Connection | None = None

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction; returns once it is committed."""
        future: Future[T] = Future()
        self._enqueue(_Unit(work, future=future))
        return future.result()

    def submit(self, work: Callable[[Connection], Any]) -> None:
        """Queue ``work`` without waiting for it; a failure is logged, not raised."""
        future: Future[Any] = Future()
        future.add_done_callback(_log_failure)
        self._enqueue(_Unit(work, future=future))

    async def run_async(self, work: Callable[[Connection], T], *, alone: bool = False) -> T:
        """``run`` for an event loop: awaits the commit without blocking a thread.

        ``alone``: nothing else is waiting on this loop, so if the writer is idle the unit
        may run inline (see the module docstring)."""
        if (
            alone
            and not self._closed
            and self._queue.empty()
            and self._conn_lock.acquire(blocking=False)
        ):
            try:
                unit = _Unit(work, future=Future())
                ran = self._run_inline(unit)
            finally:
                self._conn_lock.release()
            if ran:
                assert unit.future is not None
                return cast(T, unit.future.result())
        loop = asyncio.get_running_loop()
        awaited: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Unit(work, loop=loop, awaited=awaited))
        return await awaited

    def current(self) -> Connection | None:
        """The connection of the unit running on this thread (the writer thread, or a
        caller running a unit inline), if one is running."""
        return self._running.conn

    @contextmanager
    def nested(self) -> Iterator[Connection]:
        """The running unit's connection, for a write nested in it (``run_write`` inside
        ``call_writing``), with no savepoint of its own: if the nested write fails, the
        whole unit fails with that error and writes nothing, even when the code around
        the write catches the error and carries on. (A savepoint would cost two more
        statements per write, to serve code that does not exist.)"""
        unit, conn = self._running.unit, self._running.conn
        if unit is None or conn is None:
            raise RuntimeError("nested() outside a unit of work")
        try:
            yield conn
        except BaseException as error:
            if unit.broken is None:
                unit.broken = error
            raise

    def after_commit(self, callback: Callable[[], None]) -> bool:
        """Defer ``callback`` until the running unit's batch commits; False outside a
        unit (the caller runs it itself)."""
        unit = self._running.unit
        if unit is None:
            return False
        unit.after_commit.append(callback)
        return True

    def _enqueue(self, unit: _Unit) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the database writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="opensop-sqlite-writer", daemon=True
                )
                self._thread.start()
            self._queue.put(unit)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            self._thread = None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> Connection:
        """The one write connection (the caller holds ``_conn_lock``)."""
        if self._conn is None:
            self._conn = self._engine.connect()
            sqlite.apply_mode(self._conn, "write")
            # Waiting for the write lock is _begin_immediate's: the writer thread waits,
            # a unit running inline does not. Once BEGIN IMMEDIATE holds the lock, nothing
            # else in a WAL transaction waits for another connection.
            sqlite.driver_of(self._conn).execute("PRAGMA busy_timeout = 0")
        return self._conn

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Unit] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            with self._conn_lock:
                self._run_batch(self._connection(), batch)
            if stop:
                return

    def _run_batch(self, conn: Connection, batch: list[_Unit]) -> None:
        if len(batch) == 1:
            self._run_alone(conn, batch[0])
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            with _transaction(conn):
                # Savepoints straight on the driver connection: this thread owns it, and
                # SQLAlchemy's nested-transaction bookkeeping costs more than the SQL.
                driver = sqlite.driver_of(conn)
                for unit in batch:
                    driver.execute("SAVEPOINT unit")
                    try:
                        result = self._work(conn, unit)
                    except BaseException as error:  # handed to the unit's caller
                        driver.execute("ROLLBACK TO unit")
                        driver.execute("RELEASE unit")
                        unit.after_commit.clear()
                        outcomes.append((False, error))
                    else:
                        driver.execute("RELEASE unit")
                        outcomes.append((True, result))
        except BaseException as error:  # the COMMIT itself failed: nothing was written
            log.exception("group commit of %d units failed", len(batch))
            for unit in batch:
                unit.after_commit.clear()
                unit.failed(error)
            return
        for unit, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                unit.succeeded(value)
            else:
                unit.failed(value)

    def _work(self, conn: Connection, unit: _Unit) -> Any:
        self._running.unit, self._running.conn = unit, conn
        try:
            result = unit.work(conn)
        finally:
            self._running.unit = self._running.conn = None
        if unit.broken is not None:  # a nested write failed and its error was caught
            raise unit.broken
        return result

    def _run_alone(self, conn: Connection, unit: _Unit) -> None:
        """A unit alone in its transaction needs no savepoint: the transaction is its
        rollback scope."""
        try:
            with _transaction(conn):
                result = self._work(conn, unit)
        except BaseException as error:  # handed to the unit's caller
            unit.after_commit.clear()
            unit.failed(error)
            return
        unit.succeeded(result)

    def _run_inline(self, unit: _Unit) -> bool:
        """Run a unit alone on the calling thread; False, having done nothing, when
        another process holds the write lock (waiting for it would stall the caller)."""
        conn = self._connection()
        if not _begin_immediate(sqlite.driver_of(conn), wait=False):
            return False
        try:
            with _transaction(conn, begun=True):
                result = self._work(conn, unit)
        except BaseException as error:  # handed to the caller
            unit.after_commit.clear()
            unit.failed(error)
            return True
        unit.succeeded(result)
        return True


def _begin_immediate(driver: sqlite3.Connection, *, wait: bool) -> bool:
    """BEGIN IMMEDIATE. While another process holds the write lock: wait for it, as the
    busy timeout would (then fail as SQLite does), or without ``wait`` give up at once
    and return False."""
    pause, deadline = 0.001, time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as error:
            # Extended codes (SQLITE_BUSY_RECOVERY ...) keep the primary code in the low byte.
            code = getattr(error, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF
            if code != sqlite3.SQLITE_BUSY:
                raise
            if not wait:
                return False
            if time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


@contextmanager
def _transaction(conn: Connection, *, begun: bool = False) -> Iterator[None]:
    """A write transaction begun and ended on the driver (cheaper than SQLAlchemy's).

    A Core statement run inside makes SQLAlchemy begin its own transaction on the
    connection; the begin hook (``opensop.store.sqlite``) sees the driver already in
    one and emits nothing, and the end here goes through SQLAlchemy then, so both agree.
    """
    driver = sqlite.driver_of(conn)
    if not begun:
        _begin_immediate(driver, wait=True)
    try:
        yield
    except BaseException:
        if conn.in_transaction():
            conn.rollback()
        elif driver.in_transaction:
            driver.execute("ROLLBACK")
        raise
    if conn.in_transaction():
        conn.commit()
    else:
        driver.execute("COMMIT")
