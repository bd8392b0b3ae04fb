"""The initial schema: workspaces, tokens, processes, instances, steps, events, callbacks, jobs.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of opensop.store.types, so this file never changes with application code.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
    )

    op.create_table(
        "tokens",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_tokens_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
    )
    op.create_index("ix_tokens_secret_hash", "tokens", ["secret_hash"], unique=True)
    op.create_index("ix_tokens_workspace_id", "tokens", ["workspace_id"])

    op.create_table(
        "processes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("base_dir", sa.Text(), nullable=True),
        sa.Column("published_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_processes_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processes")),
        sa.UniqueConstraint(
            "workspace_id",
            "name",
            "version",
            name=op.f("uq_processes_workspace_id_name_version"),
        ),
    )
    op.create_index(
        "ix_processes_workspace_id_name_id", "processes", ["workspace_id", "name", "id"]
    )

    op.create_table(
        "instances",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("process_id", sa.Integer(), nullable=False),
        sa.Column("process_name", sa.String(255), nullable=False),
        sa.Column("process_version", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("outputs", JSON, nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("revision", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("parent_instance_id", sa.String(26), nullable=True),
        sa.Column("parent_step_id", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(
            ["process_id"], ["processes.id"], name=op.f("fk_instances_process_id_processes")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_instances_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.UniqueConstraint(
            "workspace_id",
            "idempotency_key",
            name=op.f("uq_instances_workspace_id_idempotency_key"),
        ),
    )
    op.create_index("ix_instances_workspace_id_id", "instances", ["workspace_id", "id"])
    op.create_index(
        "ix_instances_workspace_id_process_name_id",
        "instances",
        ["workspace_id", "process_name", "id"],
    )
    op.create_index(
        "ix_instances_workspace_id_state_id", "instances", ["workspace_id", "state", "id"]
    )
    op.create_index(
        "ix_instances_workspace_id_process_name_state_id",
        "instances",
        ["workspace_id", "process_name", "state", "id"],
    )
    op.create_index(
        "ix_instances_workspace_id_started_at", "instances", ["workspace_id", "started_at"]
    )

    op.create_table(
        "steps",
        sa.Column("instance_id", sa.String(26), nullable=False),
        sa.Column("step_id", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("sub_state", sa.String(32), nullable=True),
        sa.Column("inputs", JSON, nullable=True),
        sa.Column("outputs", JSON, nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", JSON, nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("process_name", sa.String(255), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("due_at", TIMESTAMP, nullable=True),
        sa.Column("stderr", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_steps_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("instance_id", "step_id", name=op.f("pk_steps")),
    )
    op.create_index(
        "ix_steps_workspace_id_state_sub_state", "steps", ["workspace_id", "state", "sub_state"]
    )
    op.create_index("ix_steps_lease_token", "steps", ["lease_token"], unique=True)

    op.create_table(
        "events",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(26), nullable=False),
        sa.Column("step_id", sa.String(128), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("data", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_events_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_instance_id_id", "events", ["instance_id", "id"])

    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(26), nullable=False),
        sa.Column("step_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("resolved_at", TIMESTAMP, nullable=True),
        sa.Column("payload", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_callbacks_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
    )
    op.create_index("ix_callbacks_instance_id", "callbacks", ["instance_id"])

    op.create_table(
        "jobs",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(26), nullable=True),
        sa.Column("step_id", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", JSON, nullable=True),
        sa.Column("due_at", TIMESTAMP, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dedup_key", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_jobs_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_jobs_dedup_key")),
    )
    op.create_index("ix_jobs_state_due_at", "jobs", ["state", "due_at"])
    op.create_index("ix_jobs_instance_id", "jobs", ["instance_id"])


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in (
        "jobs",
        "callbacks",
        "events",
        "steps",
        "instances",
        "processes",
        "tokens",
        "workspaces",
    ):
        op.drop_table(table)
