"""The hot queries are served by their index, in order, without a sort.

Checked through the query planners rather than by timing a million rows: on SQLite the
plan must search the named index and not build a temporary B-tree for ORDER BY; on
PostgreSQL (sequential scans disabled, since the tables are empty) it must scan the
named index and have no Sort node.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from opensop.engine.states import InstanceState, StepState, SubState
from opensop.store.database import Database
from opensop.store.tables import instances, jobs, steps

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
PAGE = 50


class Explain(sa.Executable, sa.ClauseElement):
    inherit_cache = False

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement


@compiles(Explain)
def _compile_explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN" if compiler.dialect.name == "sqlite" else "EXPLAIN"
    return f"{prefix} {compiler.process(element.statement, **kw)}"


def newest(query: sa.Select[Any]) -> sa.Select[Any]:
    return query.order_by(instances.c.id.desc()).limit(PAGE)


in_workspace = instances.c.workspace_id == "w1"
QUERIES: dict[str, tuple[str, sa.Select[Any]]] = {
    "instances newest first": (
        "ix_instances_workspace_id_id",
        newest(sa.select(instances).where(in_workspace)),
    ),
    "instances of a process": (
        "ix_instances_workspace_id_process_name_id",
        newest(sa.select(instances).where(in_workspace, instances.c.process_name == "onboard")),
    ),
    "instances in a state": (
        "ix_instances_workspace_id_state_id",
        newest(
            sa.select(instances).where(in_workspace, instances.c.state == InstanceState.RUNNING)
        ),
    ),
    "instances of a process in a state": (
        "ix_instances_workspace_id_process_name_state_id",
        newest(
            sa.select(instances).where(
                in_workspace,
                instances.c.process_name == "onboard",
                instances.c.state == InstanceState.FAILED,
            )
        ),
    ),
    "instances started since": (
        "ix_instances_workspace_id_started_at",
        sa.select(sa.func.count()).where(in_workspace, instances.c.started_at >= NOW),
    ),
    "steps waiting for a worker": (
        "ix_steps_workspace_id_state_sub_state",
        sa.select(steps)
        .where(
            steps.c.workspace_id == "w1",
            steps.c.state == StepState.ACTIVE,
            steps.c.sub_state == SubState.WAITING_FOR_WORKER,
        )
        .limit(PAGE),
    ),
    "jobs due": (
        "ix_jobs_state_due_at",
        sa.select(jobs)
        .where(jobs.c.state == "queued", jobs.c.due_at <= NOW)
        .order_by(jobs.c.due_at)
        .limit(10),
    ),
}


@pytest.mark.parametrize(("index", "query"), list(QUERIES.values()), ids=list(QUERIES))
def test_query_uses_its_index_without_sorting(
    database: Database, index: str, query: sa.Select[Any]
) -> None:
    with database.read() as conn:
        if database.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(str(row[-1]) for row in conn.execute(Explain(query)))

    assert index in plan, plan
    if database.dialect == "sqlite":
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "Sort" not in plan, plan
