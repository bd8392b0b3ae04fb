"""Database: URLs, read transactions and their isolation from writers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from opensop.store import postgres
from opensop.store.database import Database, redact_url
from opensop.store.tables import workspaces

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://sop:s3cret@db:5432/opensop", "postgresql://sop:***@db:5432/opensop"),
        ("postgresql://db/opensop?password=s3cret", "postgresql://db/opensop?password=***"),
        ("sqlite:///var/opensop.db", "sqlite:///var/opensop.db"),
        ("not a url://sop:s3cret@db", "not a url://sop:***@db"),
    ],
)
def test_redact_url_masks_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_unsupported_urls_are_refused_without_leaking_the_password() -> None:
    with pytest.raises(ValueError, match="unsupported database URL") as caught:
        Database("mysql://sop:s3cret@db/opensop")
    assert "s3cret" not in str(caught.value)


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a file"):
        Database("sqlite://")


@pytest.mark.parametrize(
    "url", ["postgresql://sop@db/opensop", "postgres://sop@db/opensop", "postgresql+psycopg://db/x"]
)
def test_postgres_urls_use_psycopg_3(url: str) -> None:
    db = Database(url)  # engines connect lazily
    assert db.dialect == "postgresql"
    assert db.engine.url.drivername == "postgresql+psycopg"


def test_other_postgres_drivers_are_refused() -> None:
    with pytest.raises(ValueError, match="psycopg 3"):
        postgres.normalize_url("postgresql+psycopg2://sop@db/opensop")


def test_repr_masks_the_password() -> None:
    assert "s3cret" not in repr(Database("postgresql://sop:s3cret@db/opensop"))


def test_sqlite_creates_the_folder_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "data" / "opensop.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.migrate()
        assert path.is_file()
    finally:
        db.dispose()


def test_read_transactions_refuse_writes_and_leave_the_connection_writable(
    database: Database,
) -> None:
    with pytest.raises(sa.exc.DBAPIError), database.read() as conn:
        conn.execute(workspaces.insert().values(id="w1", name="W", created_at=NOW))

    # The same pooled connection serves the next write.
    with database.write() as conn:
        conn.execute(workspaces.insert().values(id="w1", name="W", created_at=NOW))
    with database.read() as conn:
        assert conn.scalar(sa.select(workspaces.c.id)) == "w1"


def test_reads_see_a_snapshot_and_never_wait_for_a_writer(database: Database) -> None:
    with database.write() as writer:
        writer.execute(workspaces.insert().values(id="w1", name="W", created_at=NOW))
        # On SQLite the writer holds the write lock; a reader that wanted it would wait
        # out the busy timeout and fail.
        with database.read() as reader:
            assert reader.scalar(sa.select(sa.func.count()).select_from(workspaces)) == 0
    with database.read() as reader:
        assert reader.scalar(sa.select(sa.func.count()).select_from(workspaces)) == 1


def test_dispose_closes_the_pool_and_the_database_stays_usable(database: Database) -> None:
    database.dispose()
    with database.read() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(workspaces)) == 0


def _workspace_ids(database: Database) -> list[str]:
    with database.read() as conn:
        return list(conn.scalars(sa.select(workspaces.c.id).order_by(workspaces.c.id)))


def _add_workspace(workspace_id: str) -> Callable[[sa.Connection], None]:
    def add(conn: sa.Connection) -> None:
        conn.execute(workspaces.insert().values(id=workspace_id, name="W", created_at=NOW))

    return add


def test_a_writing_action_reads_its_own_writes(database: Database) -> None:
    def action() -> list[str]:
        database.run_write(_add_workspace("a"))
        with database.write() as conn:
            _add_workspace("c")(conn)
        with database.read() as conn:
            return list(conn.scalars(sa.select(workspaces.c.id).order_by(workspaces.c.id)))

    assert asyncio.run(database.call_writing(action)) == ["a", "c"]
    assert _workspace_ids(database) == ["a", "c"]


def test_a_failed_nested_write_fails_the_action_even_when_its_error_is_caught(
    database: Database,
) -> None:
    def action() -> str:
        database.run_write(_add_workspace("a"))
        with pytest.raises(sa.exc.IntegrityError):
            database.run_write(lambda conn: (_add_workspace("b")(conn), _add_workspace("a")(conn)))
        database.run_write(_add_workspace("c"))
        return "carried on"

    if database.dialect == "sqlite":
        # One transaction: a failed part may not be committed without the rest.
        with pytest.raises(sa.exc.IntegrityError):
            asyncio.run(database.call_writing(action))
        assert _workspace_ids(database) == []
    else:  # each run_write is a transaction of its own
        assert asyncio.run(database.call_writing(action)) == "carried on"
        assert _workspace_ids(database) == ["a", "c"]


def test_a_failed_writing_action_leaves_nothing_and_its_error_reaches_the_caller(
    database: Database,
) -> None:
    def action() -> None:
        database.run_write(_add_workspace("a"))
        raise LookupError("the action changed its mind")

    with pytest.raises(LookupError, match="changed its mind"):
        asyncio.run(database.call_writing(action))
    # On SQLite the whole action is one transaction; on PostgreSQL each run_write is its
    # own, so what the action committed before failing stays.
    expected = [] if database.dialect == "sqlite" else ["a"]
    assert _workspace_ids(database) == expected


def test_after_commit_callbacks_see_the_commit_and_are_dropped_when_the_action_fails(
    database: Database,
) -> None:
    seen: list[list[str]] = []

    def action(workspace_id: str, fail: bool) -> None:
        database.run_write(_add_workspace(workspace_id))
        database.after_commit(lambda: seen.append(_workspace_ids(database)))
        if fail:
            raise LookupError("no")

    asyncio.run(database.call_writing(lambda: action("a", False)))
    assert seen == [["a"]]
    with pytest.raises(LookupError):
        asyncio.run(database.call_writing(lambda: action("b", True)))
    if database.dialect == "sqlite":
        assert seen == [["a"]]  # dropped: nothing it announces was committed

    # Outside an action the callback runs at once.
    database.after_commit(lambda: seen.append(["now"]))
    assert seen[-1] == ["now"]


def test_concurrent_writing_actions_share_batches_and_each_gets_its_own_outcome(
    database: Database,
) -> None:
    async def many() -> list[object]:
        def action(number: int) -> int:
            database.run_write(_add_workspace(f"w{number:03}"))
            if number % 5 == 0:
                raise ValueError(number)
            return number

        calls = [database.call_writing(lambda n=n: action(n)) for n in range(40)]
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(many())
    for number, outcome in enumerate(outcomes):
        if number % 5 == 0:
            assert isinstance(outcome, ValueError)
        else:
            assert outcome == number
    kept = [f"w{n:03}" for n in range(40) if n % 5]
    if database.dialect == "sqlite":
        assert _workspace_ids(database) == kept
    else:
        assert _workspace_ids(database) == [f"w{n:03}" for n in range(40)]


def _sqlite_only(database: Database) -> None:
    if database.dialect != "sqlite":
        pytest.skip("the group-commit writer is SQLite's")


def test_a_lone_writing_action_runs_inline_on_the_callers_thread(database: Database) -> None:
    _sqlite_only(database)

    def action(workspace_id: str) -> str:
        database.run_write(_add_workspace(workspace_id))
        return threading.current_thread().name

    async def both() -> tuple[str, str, str]:
        caller = threading.current_thread().name
        inline = await database.call_writing(lambda: action("a"), alone=True)
        queued = await database.call_writing(lambda: action("b"))
        return caller, inline, queued

    caller, inline, queued = asyncio.run(both())
    assert inline == caller
    assert queued == "opensop-sqlite-writer"
    assert _workspace_ids(database) == ["a", "b"]


def test_a_lone_writing_action_never_waits_for_another_process_on_the_callers_thread(
    database: Database,
) -> None:
    _sqlite_only(database)
    other = sqlite3.connect(str(database.engine.url.database), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    async def scenario() -> tuple[str, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        def action() -> str:
            database.run_write(_add_workspace("a"))
            return threading.current_thread().name

        ticking = asyncio.create_task(ticker())
        writing = asyncio.create_task(database.call_writing(action, alone=True))
        await asyncio.sleep(0.3)
        assert not writing.done()  # still waiting for the lock...
        other.execute("COMMIT")
        ran_on = await writing
        ticking.cancel()
        return ran_on, ticks

    try:
        ran_on, ticks = asyncio.run(scenario())
    finally:
        other.close()
    assert ran_on == "opensop-sqlite-writer"  # ...on the writer thread, not the loop's
    assert ticks >= 10  # the loop kept running meanwhile
    assert _workspace_ids(database) == ["a"]


def test_the_writer_can_take_a_pooled_connection_that_served_reads(database: Database) -> None:
    with database.read() as conn:  # leaves query_only on the pooled connection
        conn.execute(sa.select(workspaces.c.id)).all()
    asyncio.run(database.call_writing(lambda: database.run_write(_add_workspace("a")), alone=True))
    database.run_write(_add_workspace("b"))
    assert _workspace_ids(database) == ["a", "b"]
