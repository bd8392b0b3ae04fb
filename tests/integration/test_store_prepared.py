"""Prepared statements: same rows, same conversions and same errors as Core."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from opensop.store.database import Database
from opensop.store.prepared import Prepared
from opensop.store.tables import events, instances, processes, workspaces
from opensop.store.types import UTCDateTime

NOW = datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=UTC)
MADRID_SUMMER = timezone(timedelta(hours=2))

INSERT_EVENT = Prepared(events.insert())
EVENTS_OF = Prepared(
    sa.select(events)
    .where(events.c.instance_id == sa.bindparam("instance_id"))
    .order_by(events.c.id)
)
RENAME_EVENT = Prepared(
    events.update().where(events.c.id == sa.bindparam("key_id")).values(type=sa.bindparam("type"))
)


def _seed_instance(conn: sa.Connection) -> None:
    conn.execute(workspaces.insert().values(id="w", name="W", created_at=NOW))
    process_id = conn.execute(
        processes.insert().values(
            workspace_id="w",
            name="p",
            version="1",
            definition={},
            source="",
            content_hash="0" * 64,
            published_at=NOW,
        )
    ).inserted_primary_key[0]
    conn.execute(
        instances.insert().values(
            id="i" * 26,
            workspace_id="w",
            process_id=process_id,
            process_name="p",
            process_version="1",
            state="running",
            inputs={},
            started_at=NOW,
            updated_at=NOW,
        )
    )


def _event(step_id: str | None, data: object, created_at: datetime) -> dict[str, object]:
    return {
        "workspace_id": "w",
        "instance_id": "i" * 26,
        "step_id": step_id,
        "type": "step.completed",
        "actor": None,
        "data": data,
        "created_at": created_at,
    }


def test_rows_written_prepared_read_back_through_core_and_prepared_alike(
    database: Database,
) -> None:
    rows = [
        _event("a", {"n": 1.5, "text": "ünïcode", "list": [1, None]}, NOW),
        _event(None, None, NOW.astimezone(MADRID_SUMMER)),  # stored as the same UTC instant
        _event("c", [], NOW + timedelta(microseconds=1)),
    ]
    with database.write() as conn:
        _seed_instance(conn)
        INSERT_EVENT.execute_many(conn, rows)
    with database.read() as conn:
        core = [dict(row._mapping) for row in conn.execute(sa.select(events).order_by(events.c.id))]
        prepared = EVENTS_OF.rows(conn, {"instance_id": "i" * 26})
    assert prepared == core
    assert [row["data"] for row in core] == [rows[0]["data"], None, []]
    assert [row["created_at"] for row in core] == [NOW, NOW, NOW + timedelta(microseconds=1)]
    assert all(row["created_at"].tzinfo is UTC for row in prepared)


def test_updates_report_the_rows_they_changed(database: Database) -> None:
    with database.write() as conn:
        _seed_instance(conn)
        INSERT_EVENT.execute(conn, _event("a", None, NOW))
        event_id = conn.scalar(sa.select(events.c.id))
        assert RENAME_EVENT.execute(conn, {"key_id": event_id, "type": "renamed"}) == 1
        assert RENAME_EVENT.execute(conn, {"key_id": event_id + 1, "type": "renamed"}) == 0
        # A literal in the statement (type == 'step.completed') is bound by itself.
        rename_completed = Prepared(
            events.update()
            .where(events.c.id == sa.bindparam("key_id"), events.c.type == "step.completed")
            .values(type=sa.bindparam("type"))
        )
        assert rename_completed.execute(conn, {"key_id": event_id, "type": "again"}) == 0
        INSERT_EVENT.execute(conn, _event("b", None, NOW))
        second = conn.scalar(sa.select(sa.func.max(events.c.id)))
        assert rename_completed.execute(conn, {"key_id": second, "type": "again"}) == 1
    with database.read() as conn:
        assert EVENTS_OF.first(conn, {"instance_id": "i" * 26})["type"] == "renamed"  # type: ignore[index]
        assert EVENTS_OF.first(conn, {"instance_id": "x" * 26}) is None


def test_driver_errors_arrive_as_sqlalchemy_errors_and_roll_back(database: Database) -> None:
    orphan = {**_event("a", None, NOW), "instance_id": "n" * 26}  # no such instance
    with pytest.raises(sa.exc.IntegrityError), database.write() as conn:
        _seed_instance(conn)
        INSERT_EVENT.execute(conn, orphan)
    with database.read() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(workspaces)) == 0


def test_naive_datetimes_are_refused_as_in_core(database: Database) -> None:
    with pytest.raises((ValueError, sa.exc.StatementError)), database.write() as conn:
        _seed_instance(conn)
        INSERT_EVENT.execute(conn, _event("a", None, NOW.replace(tzinfo=None)))


def test_on_sqlite_a_value_missing_from_the_row_is_an_error_not_a_default(
    database: Database,
) -> None:
    if database.dialect != "sqlite":
        pytest.skip("on PostgreSQL prepared statements run through SQLAlchemy")
    insert = Prepared(workspaces.insert().values(name=sa.bindparam("label")))
    with pytest.raises(ValueError, match="needs values for"), database.write() as conn:
        Prepared(instances.insert()).execute(conn, {"id": "i" * 26, "workspace_id": "w"})
    with database.write() as conn:  # a statement's own binds are fine when supplied
        insert.execute(conn, {"id": "w", "label": "w", "created_at": NOW})
        assert conn.scalar(sa.select(workspaces.c.name)) == "w"


@pytest.mark.parametrize(
    "moment",
    [
        NOW,
        NOW.replace(microsecond=0),
        datetime(5, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        NOW.astimezone(MADRID_SUMMER),
    ],
)
def test_utc_datetimes_are_stored_on_sqlite_as_sqlalchemys_datetime_text(moment: datetime) -> None:
    dialect = sa.create_engine("sqlite://").dialect
    ours = UTCDateTime().dialect_impl(dialect)
    plain = sa.DateTime().dialect_impl(dialect)
    bind, plain_bind = ours.bind_processor(dialect), plain.bind_processor(dialect)
    assert bind is not None and plain_bind is not None
    text = bind(moment)
    assert text == plain_bind(moment.astimezone(UTC).replace(tzinfo=None))
    read = ours.result_processor(dialect, None)
    assert read is not None
    assert read(text) == moment and read(text).tzinfo is UTC
    assert read("2024-03-31 01:30:15") == datetime(2024, 3, 31, 1, 30, 15, tzinfo=UTC)
    assert bind(None) is None and read(None) is None
