"""The schema, declared once in SQLAlchemy Core for SQLite and PostgreSQL alike.

Alembic migrations are generated from, and tested against, this module: a migration test
replays the whole history on an empty database and diffs the result against ``metadata``.

Conventions:

- Every constraint and index has a name (``NAMING_CONVENTION``), so Alembic's batch mode
  can recreate SQLite tables and later migrations can drop constraints by name.
- Times are ``UTCDateTime`` and have no server default: all time comes from the Clock.
- States are plain strings; the enums in ``opensop.engine.states`` own the values. No
  CHECK constraints: adding a state must not need a table rebuild on SQLite.
- Instance, callback and token ids are ULIDs, so ``ORDER BY id`` is creation order.
- Newest-first lists use ascending indexes: both databases scan a B-tree backwards
  for ``ORDER BY id DESC``, and plain column indexes compare cleanly in Alembic.
"""

from __future__ import annotations

import sqlalchemy as sa

from opensop.store.types import JSONType, UTCDateTime

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# A 64-bit id on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-numbered rowid.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ULID_LENGTH = 26
SHA256_HEX_LENGTH = 64
STEP_ID_LENGTH = 128

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(ULID_LENGTH), primary_key=True),
    sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    # The first characters of the secret, shown in listings so people can tell tokens apart.
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.String(SHA256_HEX_LENGTH), nullable=False),
    sa.Column("scopes", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Index("ix_tokens_secret_hash", "secret_hash", unique=True),
    sa.Index("ix_tokens_workspace_id", "workspace_id"),
)

processes = sa.Table(
    "processes",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("definition", JSONType, nullable=False),  # the normalized definition
    sa.Column("source", sa.Text(), nullable=False),  # the file as uploaded
    sa.Column("content_hash", sa.String(SHA256_HEX_LENGTH), nullable=False),
    sa.Column("base_dir", sa.Text(), nullable=True),  # where `run:` scripts resolve
    sa.Column("published_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("workspace_id", "name", "version"),
    # The latest version of a process: the highest id for (workspace, name).
    sa.Index("ix_processes_workspace_id_name_id", "workspace_id", "name", "id"),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.String(ULID_LENGTH), primary_key=True),
    sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("process_id", sa.Integer(), sa.ForeignKey("processes.id"), nullable=False),
    sa.Column("process_name", sa.String(255), nullable=False),
    sa.Column("process_version", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("inputs", JSONType, nullable=False),
    sa.Column("outputs", JSONType, nullable=True),
    sa.Column("metadata", JSONType, nullable=True),
    # What started the instance (a schedule tick's time, ...): `${trigger.payload.*}`.
    sa.Column("trigger_payload", JSONType, nullable=True),
    sa.Column("error", JSONType, nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("completed_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Bumped by every change; writers compare it to detect a concurrent update.
    sa.Column("revision", sa.Integer(), nullable=False, default=1, server_default=sa.text("1")),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("request_hash", sa.String(SHA256_HEX_LENGTH), nullable=True),
    sa.Column("parent_instance_id", sa.String(ULID_LENGTH), nullable=True),
    sa.Column("parent_step_id", sa.String(STEP_ID_LENGTH), nullable=True),
    sa.UniqueConstraint("workspace_id", "idempotency_key"),
    # The list views, newest first, stay index-only range scans at millions of rows.
    sa.Index("ix_instances_workspace_id_id", "workspace_id", "id"),
    sa.Index("ix_instances_workspace_id_process_name_id", "workspace_id", "process_name", "id"),
    sa.Index("ix_instances_workspace_id_state_id", "workspace_id", "state", "id"),
    sa.Index(
        "ix_instances_workspace_id_process_name_state_id",
        "workspace_id",
        "process_name",
        "state",
        "id",
    ),
    sa.Index("ix_instances_workspace_id_started_at", "workspace_id", "started_at"),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("instance_id", sa.String(ULID_LENGTH), sa.ForeignKey("instances.id")),
    sa.Column("step_id", sa.String(STEP_ID_LENGTH)),
    sa.Column("position", sa.Integer(), nullable=False),  # order in the definition
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("sub_state", sa.String(32), nullable=True),
    sa.Column("inputs", JSONType, nullable=True),
    sa.Column("outputs", JSONType, nullable=True),
    sa.Column("decided_by", sa.String(255), nullable=True),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False, default=0, server_default=sa.text("0")),
    sa.Column("error", JSONType, nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("completed_at", UTCDateTime(), nullable=True),
    # Copied from the instance so "work waiting in a workspace" needs no join.
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("process_name", sa.String(255), nullable=False),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_token", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("due_at", UTCDateTime(), nullable=True),  # timers and timeouts
    sa.Column("stderr", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("instance_id", "step_id"),
    sa.Index("ix_steps_workspace_id_state_sub_state", "workspace_id", "state", "sub_state"),
    # Unique among leased steps; NULLs never collide on either database.
    sa.Index("ix_steps_lease_token", "lease_token", unique=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("instance_id", sa.String(ULID_LENGTH), sa.ForeignKey("instances.id"), nullable=False),
    sa.Column("step_id", sa.String(STEP_ID_LENGTH), nullable=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(255), nullable=True),
    sa.Column("data", JSONType, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # An instance's history in order; readers page through it by id.
    sa.Index("ix_events_instance_id_id", "instance_id", "id"),
    # Ids are never reused on SQLite either, even after the newest rows are deleted, so a
    # reader's "after id N" cursor stays valid.
    sqlite_autoincrement=True,
)
"""Append-only audit log: rows are inserted, never updated."""

callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("id", sa.String(ULID_LENGTH), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("instance_id", sa.String(ULID_LENGTH), sa.ForeignKey("instances.id"), nullable=False),
    sa.Column("step_id", sa.String(STEP_ID_LENGTH), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # open | resolved | expired
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
    sa.Column("payload", JSONType, nullable=True),
    sa.Index("ix_callbacks_instance_id", "instance_id"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("instance_id", sa.String(ULID_LENGTH), sa.ForeignKey("instances.id"), nullable=True),
    sa.Column("step_id", sa.String(STEP_ID_LENGTH), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payload", JSONType, nullable=True),
    sa.Column("due_at", UTCDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # queued | leased | done | failed
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False, default=0, server_default=sa.text("0")),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    # Set by producers that must enqueue at most once (a schedule tick, a step's timer).
    sa.Column("dedup_key", sa.String(255), nullable=True),
    sa.UniqueConstraint("dedup_key"),
    # The runner's poll: the earliest due job in a state.
    sa.Index("ix_jobs_state_due_at", "state", "due_at"),
    sa.Index("ix_jobs_instance_id", "instance_id"),
)
