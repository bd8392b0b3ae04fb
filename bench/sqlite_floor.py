"""The raw sqlite3 floor of W1: what the disk and SQLite allow, with no engine and no HTTP.

One thread, one connection, WAL, the given ``synchronous`` level. Per instance of the
3-step W1 process (value -> form -> value) it commits ``txns`` transactions holding the
rows an engine has to keep (an instance row, 3 step rows, event rows, JSON text of
realistic size):

- 4 transactions (the peers' definition of the floor): 1. insert the instance, its 3
  steps and 2 events; 2. the first step completes, the form becomes active (+1 event);
  3. the form is submitted (+1 event); 4. the last step and the instance complete (+1 event);
- 2 transactions (what OpenSOP commits per W1 instance: one for the start, one for the
  submission): the same rows and updates, 1+2 and 3+4 in one transaction each.

    .venv/bin/python bench/sqlite_floor.py                      # 2,000 instances, FULL
    .venv/bin/python bench/sqlite_floor.py --synchronous NORMAL --txns 2
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import VAR_DIR, remove_sqlite_files

SCHEMA = """
CREATE TABLE instances (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, process_name TEXT NOT NULL,
    process_version TEXT NOT NULL, state TEXT NOT NULL, inputs TEXT NOT NULL, outputs TEXT,
    started_at TEXT NOT NULL, completed_at TEXT, updated_at TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE INDEX ix_instances_ws_state_id ON instances (workspace_id, state, id);
CREATE TABLE steps (
    instance_id TEXT NOT NULL REFERENCES instances (id), step_id TEXT NOT NULL,
    position INTEGER NOT NULL, type TEXT NOT NULL, state TEXT NOT NULL, sub_state TEXT,
    inputs TEXT, outputs TEXT, decided_by TEXT, started_at TEXT, completed_at TEXT,
    PRIMARY KEY (instance_id, step_id)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL REFERENCES instances (id),
    step_id TEXT, type TEXT NOT NULL, actor TEXT, data TEXT, created_at TEXT NOT NULL
);
CREATE INDEX ix_events_instance_id_id ON events (instance_id, id);
"""

NOW = "2025-01-15T10:30:00.000000+00:00"
INPUTS = json.dumps({"who": "Ada Lovelace", "request": "W1 peer benchmark", "priority": 2})
GREETING = json.dumps({"greeting": "hi Ada Lovelace"})
FORM = json.dumps({"approved": True, "note": "looks fine, go ahead"})
SUMMARY = json.dumps({"summary": "hi Ada Lovelace: looks fine, go ahead"})
OUTPUTS = json.dumps({"greeting": "hi Ada Lovelace", "summary": "hi Ada Lovelace: ok"})


@dataclass(frozen=True)
class Floor:
    synchronous: str
    txns: int
    instances: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.instances / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"raw sqlite3 floor, {self.txns} txns/instance, synchronous={self.synchronous}: "
            f"{self.rate:,.0f} instances/s ({self.instances} in {self.seconds:.2f} s, "
            f"{self.seconds * 1000 / max(1, self.instances * self.txns):.3f} ms per commit)"
        )


def _start(cur: sqlite3.Cursor, iid: str) -> None:
    cur.execute(
        "INSERT INTO instances VALUES (?, 'default', 'w1-peer', '1', 'running', ?, NULL,"
        " ?, NULL, ?, 1)",
        (iid, INPUTS, NOW, NOW),
    )
    cur.executemany(
        "INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, NULL)",
        [
            (iid, "greet", 0, "automated", "active", "running", '{"who": "Ada Lovelace"}', NOW),
            (iid, "review", 1, "form", "pending", None, None, None),
            (iid, "wrap-up", 2, "automated", "pending", None, None, None),
        ],
    )
    cur.executemany(
        "INSERT INTO events (instance_id, step_id, type, actor, data, created_at)"
        " VALUES (?, ?, ?, 'token:bench', ?, ?)",
        [
            (iid, None, "instance.started", INPUTS, NOW),
            (iid, "greet", "step.started", None, NOW),
        ],
    )


def _first_step_done(cur: sqlite3.Cursor, iid: str) -> None:
    cur.execute(
        "UPDATE steps SET state = 'completed', sub_state = NULL, outputs = ?, completed_at = ?"
        " WHERE instance_id = ? AND step_id = 'greet'",
        (GREETING, NOW, iid),
    )
    cur.execute(
        "UPDATE steps SET state = 'active', sub_state = 'waiting_for_input', inputs = '{}',"
        " started_at = ? WHERE instance_id = ? AND step_id = 'review'",
        (NOW, iid),
    )
    cur.execute(
        "INSERT INTO events (instance_id, step_id, type, actor, data, created_at)"
        " VALUES (?, 'greet', 'step.completed', 'engine', ?, ?)",
        (iid, GREETING, NOW),
    )


def _form_submitted(cur: sqlite3.Cursor, iid: str) -> None:
    cur.execute(
        "UPDATE steps SET state = 'completed', sub_state = NULL, outputs = ?,"
        " decided_by = 'human:ana', completed_at = ? WHERE instance_id = ? AND step_id = 'review'",
        (FORM, NOW, iid),
    )
    cur.execute(
        "INSERT INTO events (instance_id, step_id, type, actor, data, created_at)"
        " VALUES (?, 'review', 'step.completed', 'human:ana', ?, ?)",
        (iid, FORM, NOW),
    )


def _instance_done(cur: sqlite3.Cursor, iid: str) -> None:
    cur.execute(
        "UPDATE steps SET state = 'completed', outputs = ?, started_at = ?, completed_at = ?"
        " WHERE instance_id = ? AND step_id = 'wrap-up'",
        (SUMMARY, NOW, NOW, iid),
    )
    cur.execute(
        "UPDATE instances SET state = 'completed', outputs = ?, completed_at = ?,"
        " updated_at = ?, revision = revision + 1 WHERE id = ?",
        (OUTPUTS, NOW, NOW, iid),
    )
    cur.execute(
        "INSERT INTO events (instance_id, step_id, type, actor, data, created_at)"
        " VALUES (?, NULL, 'instance.completed', 'engine', ?, ?)",
        (iid, OUTPUTS, NOW),
    )


def measure(path: Path, *, synchronous: str, instances: int, txns: int = 4) -> Floor:
    """Commit ``instances`` W1 instances in ``txns`` transactions each; the file is
    created fresh and removed afterwards."""
    if txns not in (2, 4):
        raise ValueError("txns is 4 (the peers' floor) or 2 (OpenSOP's commits per instance)")
    remove_sqlite_files(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.executescript(SCHEMA)
        cur = conn.cursor()
        groups = (
            [(_start,), (_first_step_done,), (_form_submitted,), (_instance_done,)]
            if txns == 4
            else [(_start, _first_step_done), (_form_submitted, _instance_done)]
        )
        started = time.perf_counter()
        for number in range(instances):
            iid = f"01JBENCH{number:018d}"
            for group in groups:
                cur.execute("BEGIN IMMEDIATE")
                for part in group:
                    part(cur, iid)
                cur.execute("COMMIT")
        seconds = time.perf_counter() - started
        (count,) = conn.execute(
            "SELECT count(*) FROM instances WHERE state = 'completed'"
        ).fetchone()
        if count != instances:
            raise RuntimeError(f"floor wrote {count} completed instances, not {instances}")
    finally:
        conn.close()
        remove_sqlite_files(path)
    return Floor(synchronous, txns, instances, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--txns", type=int, choices=[2, 4], default=4)
    parser.add_argument(
        "--work-dir", type=Path, default=VAR_DIR / "w1_peer", help="where the file goes"
    )
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="floor-", dir=args.work_dir) as folder:
        floor = measure(
            Path(folder) / "floor.db",
            synchronous=args.synchronous,
            instances=args.instances,
            txns=args.txns,
        )
    print(floor.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
