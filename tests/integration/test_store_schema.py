"""The schema, its migrations and its column types, on SQLite and PostgreSQL.

The migration test replays the whole Alembic history on an empty database and diffs the
result against the declared ``metadata``: a migration that drifts from tables.py fails it.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from opensop.engine.states import InstanceState, StepState, SubState
from opensop.store.database import Database, alembic_config
from opensop.store.tables import instances, jobs, metadata, steps, tokens, workspaces

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def schema_diff(db: Database) -> list[Any]:
    with db.read() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def schema_snapshot(db: Database) -> dict[str, Any]:
    """Everything reflection can see, in a comparable form."""
    with db.read() as conn:
        inspector = sa.inspect(conn)
        snapshot: dict[str, Any] = {
            "revision": MigrationContext.configure(conn).get_current_revision()
        }
        for table in sorted(inspector.get_table_names()):
            snapshot[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c["default"])
                    for c in inspector.get_columns(table)
                ],
                "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted(str(fk) for fk in inspector.get_foreign_keys(table)),
                "indexes": sorted(str(ix) for ix in inspector.get_indexes(table)),
                "uniques": sorted(str(uq) for uq in inspector.get_unique_constraints(table)),
            }
        return snapshot


def add_workspace(conn: sa.Connection, workspace_id: str = "w1", **values: Any) -> None:
    conn.execute(
        workspaces.insert().values(
            {"id": workspace_id, "name": "Workspace", "created_at": NOW, **values}
        )
    )


def add_job(conn: sa.Connection, **values: Any) -> int:
    row = {
        "workspace_id": "w1",
        "kind": "timer",
        "due_at": NOW,
        "state": "queued",
        "created_at": NOW,
        **values,
    }
    job_id: int = conn.execute(jobs.insert().values(row)).inserted_primary_key[0]
    return job_id


# --- migrations -------------------------------------------------------------------------


def test_migrate_creates_exactly_the_declared_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        assert schema_diff(db) == []
        with db.read() as conn:
            assert set(sa.inspect(conn).get_table_names()) == {*metadata.tables, "alembic_version"}
            head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
            assert MigrationContext.configure(conn).get_current_revision() == head
    finally:
        db.dispose()


def test_migrate_twice_is_a_no_op(database: Database) -> None:
    with database.write() as conn:
        add_workspace(conn)
    before = schema_snapshot(database)

    database.migrate()

    assert schema_snapshot(database) == before
    with database.read() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(workspaces)) == 1


def test_history_downgrades_to_nothing_and_upgrades_again(database: Database) -> None:
    with database.write() as conn:
        command.downgrade(alembic_config(conn), "base")
    with database.read() as conn:
        assert sa.inspect(conn).get_table_names() == ["alembic_version"]

    database.migrate()

    assert schema_diff(database) == []


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError), database.write() as conn:
        conn.execute(
            tokens.insert().values(
                id="01HNBX5Z6R8Y3M2K4J7Q9W0E1T",
                workspace_id="missing",
                name="ci",
                prefix="sop_abcd",
                secret_hash="0" * 64,
                scopes=["read"],
                created_at=NOW,
            )
        )


@pytest.mark.parametrize(
    ("states", "column"),
    [(InstanceState, instances.c.state), (StepState, steps.c.state), (SubState, steps.c.sub_state)],
)
def test_state_values_fit_their_columns(states: type[StrEnum], column: sa.Column[str]) -> None:
    # SQLite ignores VARCHAR lengths; PostgreSQL would refuse a longer value.
    assert isinstance(column.type, sa.String)
    assert column.type.length is not None
    assert max(len(state) for state in states) <= column.type.length


# --- SQLite connection setup ------------------------------------------------------------


@pytest.mark.parametrize(("level", "expected"), [("FULL", 2), ("NORMAL", 1)])
def test_sqlite_pragmas_are_in_force(sqlite_url: str, level: str, expected: int) -> None:
    db = Database(sqlite_url, sqlite_synchronous=level)
    try:
        for transaction in (db.write, db.read):
            with transaction() as conn:

                def pragma(name: str, conn: sa.Connection = conn) -> Any:
                    return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

                assert pragma("journal_mode") == "wal"
                assert pragma("synchronous") == expected
                assert pragma("foreign_keys") == 1
                assert pragma("busy_timeout") == 10_000
    finally:
        db.dispose()


def test_sqlite_migrates_with_foreign_keys_off_then_checks_them(sqlite_url: str) -> None:
    # Batch migrations rebuild tables; with foreign keys on, dropping a referenced table
    # would fail or cascade.
    db = Database(sqlite_url)
    statements: list[str] = []

    def trace(dbapi_connection: Any, record: Any) -> None:
        # The driver's own trace sees every statement, including the BEGIN and PRAGMAs
        # that the begin hook sends straight to the driver connection.
        dbapi_connection.set_trace_callback(lambda sql: statements.append(sql.strip()))

    sa.event.listen(db.engine, "connect", trace)
    try:
        db.migrate()
        with db.write() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()

    assert statements.index("PRAGMA foreign_keys = OFF") < statements.index("BEGIN IMMEDIATE")
    assert "PRAGMA foreign_key_check" in statements
    assert statements.count("PRAGMA foreign_keys = ON") == 1  # back on for the write


def test_sqlite_synchronous_must_be_full_or_normal(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Database(sqlite_url, sqlite_synchronous="OFF")


def test_sqlite_writers_take_turns(sqlite_url: str) -> None:
    """Read-then-write transactions in two threads: none fails, no update is lost."""
    db = Database(sqlite_url)
    try:
        db.migrate()
        with db.write() as conn:
            add_workspace(conn)
            job_id = add_job(conn)
        start = threading.Barrier(2)

        def increment(times: int) -> None:
            start.wait()
            for _ in range(times):
                with db.write() as conn:
                    attempt = conn.scalar(sa.select(jobs.c.attempt).where(jobs.c.id == job_id))
                    conn.execute(
                        jobs.update().where(jobs.c.id == job_id).values(attempt=attempt + 1)
                    )

        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(increment, 200) for _ in range(2)]:
                future.result()

        with db.read() as conn:
            assert conn.scalar(sa.select(jobs.c.attempt).where(jobs.c.id == job_id)) == 400
    finally:
        db.dispose()


# --- transactions -----------------------------------------------------------------------


def test_write_rolls_back_everything_when_the_block_raises(database: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), database.write() as conn:
        add_workspace(conn)
        add_job(conn)
        raise Boom

    with database.read() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(workspaces)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(jobs)) == 0


def test_write_rolls_back_earlier_statements_when_a_later_one_fails(database: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError), database.write() as conn:
        add_workspace(conn, "w1")
        add_workspace(conn, "w1")

    with database.read() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(workspaces)) == 0


@pytest.mark.postgres
def test_postgres_job_claims_skip_locked_rows(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        db.migrate()
        with db.write() as conn:
            add_workspace(conn)
            first_job = add_job(conn, due_at=NOW)
            second_job = add_job(conn, due_at=NOW + timedelta(seconds=1))
        next_due = (
            sa.select(jobs.c.id)
            .where(jobs.c.state == "queued")
            .order_by(jobs.c.due_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )

        with db.write() as runner_a, db.write() as runner_b:
            assert runner_a.scalar(next_due) == first_job
            assert runner_b.scalar(next_due) == second_job
            with pytest.raises(sa.exc.OperationalError, match="lock"), db.write() as other:
                other.execute(
                    sa.select(jobs.c.id).where(jobs.c.id == first_job).with_for_update(nowait=True)
                )
    finally:
        db.dispose()


# --- column types -----------------------------------------------------------------------


def test_utc_datetime_round_trips_aware_values_as_utc(database: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    # 12:30:00.123456+02:00 is 10:30:00.123456 UTC: earlier than 11:00 UTC.
    with database.write() as conn:
        add_workspace(conn, "w1", created_at=datetime(2024, 1, 15, 12, 30, 0, 123456, plus_two))
        add_workspace(conn, "w2", created_at=datetime(2024, 1, 15, 11, 0, tzinfo=UTC))

    with database.read() as conn:
        rows = conn.execute(
            sa.select(workspaces.c.id, workspaces.c.created_at).order_by(workspaces.c.created_at)
        ).all()
        matched = conn.scalar(
            sa.select(workspaces.c.id).where(
                workspaces.c.created_at == datetime(2024, 1, 15, 10, 30, 0, 123456, UTC)
            )
        )

    assert [row.id for row in rows] == ["w1", "w2"]
    assert rows[0].created_at == datetime(2024, 1, 15, 10, 30, 0, 123456, UTC)
    assert all(row.created_at.tzinfo is UTC for row in rows)
    assert matched == "w1"


def test_utc_datetime_refuses_naive_values(database: Database) -> None:
    naive = datetime(2024, 1, 15, 10, 30)
    with pytest.raises(sa.exc.StatementError, match="naive"), database.write() as conn:
        add_workspace(conn, created_at=naive)
    with pytest.raises(sa.exc.StatementError, match="naive"), database.read() as conn:
        conn.execute(sa.select(workspaces).where(workspaces.c.created_at < naive))


NESTED: dict[str, Any] = {
    "name": "Zoë Ångström",
    "greeting": "こんにちは 👋",
    "rtl": "مرحبا",
    "numbers": [0, -7, 2**53, 2.5, 1e-9],
    "flags": [True, False, None],
    "deep": {"list": [[{"k": ["v", {"ß": "straße"}]}]], "empty": {}, "none": []},
}


def test_json_round_trips_nested_unicode_and_none_is_sql_null(database: Database) -> None:
    with database.write() as conn:
        add_workspace(conn)
        nested_id = add_job(conn, payload=NESTED)
        list_id = add_job(conn, payload=["a", 1])
        none_id = add_job(conn, payload=None)

    with database.read() as conn:
        payloads = {
            row.id: row.payload for row in conn.execute(sa.select(jobs.c.id, jobs.c.payload))
        }
        null_ids = conn.scalars(sa.select(jobs.c.id).where(jobs.c.payload.is_(None))).all()

    assert payloads == {nested_id: NESTED, list_id: ["a", 1], none_id: None}
    assert null_ids == [none_id]
