"""Database: URLs, read transactions and their isolation from writers."""

from __future__ import annotations

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
