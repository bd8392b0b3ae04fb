"""Fill a SQLite store with many instances fast: bulk SQL rows cloned from real ones.

Starting a million instances over HTTP takes too long, so the rows are written directly,
but their shapes come from the engine itself: a throw-away store runs real use cases
(``Service.start``/``submit``/``cancel``) through every stage of customer-onboarding, and
the instance, step and event rows it wrote are cloned with new ULIDs and shifted times.
The one exception is ``failed``: customer-onboarding cannot fail through a public use
case, so that template is the "waiting for the risk worker" one with the changes the
engine's ``_fail_step`` makes (step and instance ``failed``, their errors, two events).

The target gets its schema from ``opensop migrate`` and its processes from
``Service.register_in``: customer-onboarding (from examples/) plus three renamed copies,
so list queries filtered by process see a realistic share of rows.

    .venv/bin/python bench/fill_store.py var/bench/store.db --instances 100000
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from common import EXAMPLES_DIR, opensop_executable, remove_sqlite_files, sqlite_url
from ulid import ULID

from opensop.config import Settings
from opensop.server import build_service
from opensop.service import Service
from opensop.store.database import MIGRATIONS_DIR

WORKSPACE = "default"
PROCESS = "customer-onboarding"
SOURCE_FILE = EXAMPLES_DIR / f"{PROCESS}.sop.yaml"
# Process name -> share of instances. The first is the example itself.
PROCESS_MIX: dict[str, float] = {
    PROCESS: 0.4,
    "supplier-onboarding": 0.2,
    "merchant-onboarding": 0.2,
    "partner-onboarding": 0.2,
}
# Template name -> share of instances (instance state in the name).
STATE_MIX: dict[str, float] = {
    "running-collect-us": 0.08,
    "running-collect-mx": 0.03,
    "running-mx-compliance": 0.03,
    "running-score-risk": 0.06,
    "running-approval": 0.05,
    "completed-us": 0.42,
    "completed-mx": 0.13,
    "cancelled": 0.12,
    "failed": 0.08,
}
TABLES = ("instances", "steps", "events")
BATCH = 20_000
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DATETIME on SQLite


def schema_head() -> str:
    """The newest migration: a cached store built at another head must be rebuilt."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    return head or ""


def process_source(name: str) -> bytes:
    text = SOURCE_FILE.read_text()
    if name != PROCESS:
        text = text.replace(f"name: {PROCESS}", f"name: {name}", 1)
    return text.encode()


def register_processes(service: Service, names: Sequence[str]) -> None:
    for name in names:
        service.register_in(
            WORKSPACE, process_source(name), filename=f"{name}.sop.yaml", base_dir=EXAMPLES_DIR
        )


# -- templates: real rows from real use cases --------------------------------------------


@dataclass
class Template:
    """One instance's rows. Times are offsets from the instance's start."""

    name: str
    columns: dict[str, list[str]]  # table -> column names (events without id)
    rows: dict[str, list[list[Any]]]  # table -> rows in insert order
    time_columns: dict[str, list[int]]  # table -> indexes of DATETIME columns


COLLECT = {
    "legal_name": "Acme Corporation LLC",
    "tax_id": "98-7654321",
    "fiscal_address": "100 Main St, Springfield",
    "monthly_volume_usd": 250000,
}
MX_CHECKS = {"rfc_verified": True, "beneficial_owners": ["Ana Ruiz", "Luis Soto"]}
RISK = {"risk_score": 27.5, "risk_level": "low"}
APPROVAL = {"approved": True, "notes": "Volume and risk within policy."}


def _scenarios(service: Service, secret: str) -> dict[str, str]:
    """Run customer-onboarding to every stage; template name -> instance id."""
    who = service.authenticate(secret)

    def start(country: str) -> str:
        body = {
            "inputs": {
                "company_name": "Acme Corp",
                "country": country,
                "contact_email": "ops@acme.example",
            }
        }
        return service.start(who, PROCESS, body).view.run.id

    def submit(instance_id: str, step_id: str, outputs: dict[str, Any], by: str) -> None:
        service.submit(who, PROCESS, instance_id, step_id, {"outputs": outputs, "decided_by": by})

    ids: dict[str, str] = {}
    ids["running-collect-us"] = start("US")
    ids["running-collect-mx"] = start("MX")
    ids["running-mx-compliance"] = i = start("MX")
    submit(i, "collect-business-info", COLLECT, "human:ana")
    ids["running-score-risk"] = i = start("US")
    submit(i, "collect-business-info", COLLECT, "agent:intake")
    ids["running-approval"] = i = start("US")
    submit(i, "collect-business-info", COLLECT, "human:ana")
    submit(i, "score-risk", RISK, "worker:risk")
    ids["completed-us"] = i = start("US")
    for step, outputs, by in (
        ("collect-business-info", COLLECT, "agent:intake"),
        ("score-risk", RISK, "worker:risk"),
        ("manager-approval", APPROVAL, "human:maria"),
    ):
        submit(i, step, outputs, by)
    ids["completed-mx"] = i = start("MX")
    for step, outputs, by in (
        ("collect-business-info", COLLECT, "human:ana"),
        ("mx-compliance", MX_CHECKS, "human:luis"),
        ("score-risk", RISK, "worker:risk"),
        ("manager-approval", APPROVAL, "human:maria"),
    ):
        submit(i, step, outputs, by)
    ids["cancelled"] = i = start("US")
    service.cancel(who, PROCESS, i, "Duplicate application.")
    ids["failed"] = start("US")  # made a score-risk failure below
    submit(ids["failed"], "collect-business-info", COLLECT, "agent:intake")
    return ids


def _read_template(conn: sqlite3.Connection, name: str, instance_id: str) -> Template:
    queries = {
        "instances": "SELECT * FROM instances WHERE id = ?",
        "steps": "SELECT * FROM steps WHERE instance_id = ? ORDER BY position",
        "events": "SELECT * FROM events WHERE instance_id = ? ORDER BY id",
    }
    columns: dict[str, list[str]] = {}
    rows: dict[str, list[list[Any]]] = {}
    time_columns: dict[str, list[int]] = {}
    for table, query in queries.items():
        cursor = conn.execute(query, (instance_id,))
        names = [d[0] for d in cursor.description]
        fetched = [list(r) for r in cursor.fetchall()]
        if table == "events":  # the id is the database's (AUTOINCREMENT)
            names, fetched = names[1:], [r[1:] for r in fetched]
        types = {r[1]: r[2] for r in conn.execute(f"PRAGMA table_info({table})")}
        columns[table] = names
        rows[table] = fetched
        time_columns[table] = [i for i, c in enumerate(names) if types[c] == "DATETIME"]
    return Template(name, columns, rows, time_columns)


def _make_failed(template: Template) -> None:
    """Turn "waiting for the risk worker" into what ``machine._fail_step`` writes."""
    error = {"code": "worker_failed", "message": "Risk service answered 503 three times."}
    instance_error = {"step_id": "score-risk", **error}
    col = {t: {c: i for i, c in enumerate(cs)} for t, cs in template.columns.items()}
    (inst,) = template.rows["instances"]
    done_at = inst[col["instances"]["updated_at"]]
    inst[col["instances"]["state"]] = "failed"
    inst[col["instances"]["error"]] = json.dumps(instance_error)
    inst[col["instances"]["completed_at"]] = done_at
    inst[col["instances"]["revision"]] += 1
    s = col["steps"]
    for step in template.rows["steps"]:
        if step[s["step_id"]] == "score-risk":
            step[s["state"]], step[s["sub_state"]] = "failed", None
            step[s["completed_at"]], step[s["error"]] = done_at, json.dumps(error)
    e = col["events"]
    for event_type, step_id, data in (
        ("step.failed", "score-risk", error),
        ("instance.failed", None, instance_error),
    ):
        event: list[Any] = [None] * len(template.columns["events"])
        event[e["workspace_id"]], event[e["instance_id"]] = WORKSPACE, inst[0]
        event[e["step_id"]], event[e["type"]], event[e["actor"]] = step_id, event_type, "engine"
        event[e["data"]], event[e["created_at"]] = json.dumps(data), done_at
        template.rows["events"].append(event)


def make_templates(folder: Path) -> list[Template]:
    """Run the scenarios in a throw-away store under ``folder``; read their rows back."""
    db_path = folder / "templates.db"
    remove_sqlite_files(db_path)
    service = build_service(Settings(database_url=sqlite_url(db_path)))
    try:
        register_processes(service, [PROCESS])
        secret = service.create_token(WORKSPACE, "fill", None).secret
        ids = _scenarios(service, secret)
    finally:
        service.db.dispose()
    conn = sqlite3.connect(db_path)
    try:
        templates = [_read_template(conn, name, ids[name]) for name in STATE_MIX]
    finally:
        conn.close()
    remove_sqlite_files(db_path)
    for template in templates:
        if template.name == "failed":
            _make_failed(template)
    return templates


# -- the bulk fill -----------------------------------------------------------------------


@dataclass
class _Shape:
    """A template rendered for one process: rows with times as offsets, ready to stamp."""

    rows: dict[str, list[list[Any]]]
    times: dict[str, list[tuple[int, timedelta | None]]]  # table -> (column, offset)
    id_column: dict[str, int]  # table -> index of the instance id


def _shape(template: Template, process: str, process_id: int) -> _Shape:
    cols = {t: {c: i for i, c in enumerate(cs)} for t, cs in template.columns.items()}
    (inst,) = template.rows["instances"]
    origin = datetime.fromisoformat(inst[cols["instances"]["started_at"]])
    rows: dict[str, list[list[Any]]] = {}
    times: dict[str, list[tuple[int, timedelta | None]]] = {}
    for table in TABLES:
        rows[table] = []
        for row in template.rows[table]:
            row = list(row)
            if "process_name" in cols[table]:
                row[cols[table]["process_name"]] = process
            if table == "instances":
                row[cols[table]["process_id"]] = process_id
            rows[table].append(row)
        times[table] = []
        for index in template.time_columns[table]:
            # One offset per column: every row of a template shares it (same use case call).
            values = {r[index] for r in template.rows[table]}
            offsets = {datetime.fromisoformat(v) - origin if v else None for v in values}
            if len(offsets) > 1:  # rows differ: stamp each row's own value later
                offsets = {None}
            times[table].append((index, offsets.pop()))
    id_column = {
        "instances": cols["instances"]["id"],
        "steps": cols["steps"]["instance_id"],
        "events": cols["events"]["instance_id"],
    }
    _keep_row_times(template, rows, times, origin)
    return _Shape(rows, times, id_column)


def _keep_row_times(
    template: Template,
    rows: dict[str, list[list[Any]]],
    times: dict[str, list[tuple[int, timedelta | None]]],
    origin: datetime,
) -> None:
    """Columns whose offset differs row by row keep a per-row offset in the row itself."""
    for table in TABLES:
        for index, offset in times[table]:
            if offset is not None:
                continue
            for row in rows[table]:
                if row[index]:
                    row[index] = datetime.fromisoformat(row[index]) - origin


def _stamp(shape: _Shape, instance_id: str, start: datetime) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {}
    cache: dict[timedelta, str] = {}

    def at(offset: timedelta) -> str:
        text = cache.get(offset)
        if text is None:
            text = cache[offset] = (start + offset).strftime(SQLITE_TIME)
        return text

    for table in TABLES:
        id_index = shape.id_column[table]
        stamped = []
        for base in shape.rows[table]:
            row = base.copy()
            row[id_index] = instance_id
            for index, offset in shape.times[table]:
                if offset is not None:
                    row[index] = at(offset)
                elif row[index] is not None:
                    row[index] = at(row[index])
            stamped.append(row)
        out[table] = stamped
    return out


@dataclass(frozen=True)
class FillReport:
    instances: int
    steps: int
    events: int
    seconds: float
    bytes: int


def fill(
    path: Path,
    instances: int,
    *,
    seed: int = 1,
    span_days: float = 90.0,
    progress: Callable[[str], None] | None = None,
) -> FillReport:
    """Create ``path`` (replacing it) holding ``instances`` instances of mixed processes."""
    started = time.monotonic()
    remove_sqlite_files(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [opensop_executable(), "migrate", "--database-url", sqlite_url(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    service = build_service(Settings(database_url=sqlite_url(path)))
    try:
        register_processes(service, list(PROCESS_MIX))
    finally:
        service.db.dispose()
    with tempfile.TemporaryDirectory(prefix="opensop-fill-") as folder:
        templates = make_templates(Path(folder))

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        process_ids = dict(conn.execute("SELECT name, id FROM processes"))
        shapes = [
            (_shape(t, p, process_ids[p]), share * STATE_MIX[t.name])
            for p, share in PROCESS_MIX.items()
            for t in templates
        ]
        columns = templates[0].columns
        inserts = {
            table: f"INSERT INTO {table} ({', '.join(columns[table])}) "
            f"VALUES ({', '.join('?' * len(columns[table]))})"
            for table in TABLES
        }
        # A bulk load on a private file: no journal, no fsync; WAL is restored at the end.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -1000000")
        conn.execute("PRAGMA foreign_keys = OFF")
        counts = _bulk_insert(conn, shapes, inserts, instances, seed, span_days, progress)
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return FillReport(
        instances, counts["steps"], counts["events"], time.monotonic() - started, size
    )


def _bulk_insert(
    conn: sqlite3.Connection,
    shapes: list[tuple[_Shape, float]],
    inserts: dict[str, str],
    instances: int,
    seed: int,
    span_days: float,
    progress: Callable[[str], None] | None,
) -> dict[str, int]:
    rng = random.Random(seed)
    weights = [w for _, w in shapes]
    # Oldest first, so ULIDs (and every id-ordered index) grow like a real store's.
    newest = time.time() - 60
    step = span_days * 86400 / max(1, instances)
    oldest = newest - step * instances
    counts = dict.fromkeys(TABLES, 0)
    began = time.monotonic()
    for first in range(0, instances, BATCH):
        size = min(BATCH, instances - first)
        picks = rng.choices(range(len(shapes)), weights, k=size)
        batch: dict[str, list[list[Any]]] = {t: [] for t in TABLES}
        for offset, pick in enumerate(picks):
            ts = oldest + (first + offset) * step
            start = datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)
            rows = _stamp(shapes[pick][0], str(ULID.from_timestamp(ts)), start)
            for table in TABLES:
                batch[table].extend(rows[table])
        conn.execute("BEGIN")
        for table in TABLES:
            conn.executemany(inserts[table], batch[table])
            counts[table] += len(batch[table])
        conn.execute("COMMIT")
        done = first + size
        if progress is not None and (done % 100_000 == 0 or done == instances):
            rate = done / (time.monotonic() - began)
            progress(
                f"  filled {done:>9,} / {instances:,} instances ({rate:,.0f}/s, "
                f"eta {(instances - done) / rate:,.0f} s)"
            )
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("path", type=Path, help="the SQLite file to (re)create")
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--span-days",
        type=float,
        default=90.0,
        help="start times spread over this many days up to now",
    )
    args = parser.parse_args()
    report = fill(
        args.path, args.instances, seed=args.seed, span_days=args.span_days, progress=print
    )
    print(
        f"{report.instances:,} instances, {report.steps:,} steps, {report.events:,} events "
        f"in {report.seconds:.0f} s; {report.bytes / 1e6:,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
