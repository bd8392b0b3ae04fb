"""Crash recovery: SIGKILL the server while scripts run and timers wait, start it again on
the same SQLite file, and every instance finishes with each step completed exactly once.

OPENSOP_JOB_LEASE_SECONDS=2 lets the restarted server retake the dead one's jobs soon.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.support.api import instance, process, register, start, unique
from tests.support.background import (
    automated,
    completions,
    events,
    moment,
    poll,
    settle,
    step_of,
    wait_step,
    write_script,
)
from tests.support.server import running_server, running_worker

INSTANCES = 20
SLOW = """\
import json, os, pathlib, sys, time
json.load(sys.stdin)
with open(pathlib.Path(__file__).with_name("runs.log"), "a") as log:
    log.write(os.environ["OPENSOP_INSTANCE_ID"] + " " + os.environ["OPENSOP_STEP_ID"] + "\\n")
time.sleep(1)
print(json.dumps({"slept": True}))
"""


@pytest.mark.slow
def test_a_killed_server_finishes_every_instance_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    write_script(folder, "slow.py", SLOW)
    url = f"sqlite:///{tmp_path / 'opensop.db'}"
    env = {"OPENSOP_PROCESS_DIR": str(folder), "OPENSOP_JOB_LEASE_SECONDS": "2"}
    name, late = unique("crash"), unique("late")
    steps = [
        automated("first", "slow.py"),
        wait_step("pause", seconds=2),
        automated("last", "slow.py"),
    ]

    with running_server(url, env=env, args=["--workers", "8"]) as first, first.client() as client:
        token = first.token
        register(client, process(name, steps))
        register(client, process(late, [wait_step("late", seconds=2)]))
        ids = [start(client, name)["id"] for _ in range(INSTANCES)]
        poll(
            lambda: [instance(client, name, i) for i in ids],
            lambda bodies: sum(step_of(b, "first")["state"] == "completed" for b in bodies) >= 4,
            what="the first scripts to finish",
        )
        late_id = start(client, late)["id"]
        due = moment(step_of(instance(client, late, late_id), "late")["due_at"])
        snapshot = Counter(
            (step["id"], step["sub_state"])
            for body in (instance(client, name, i) for i in ids)
            for step in body["steps"]
            if step["state"] == "active"
        )
        first.kill()

    # The crash caught work in flight, or this test proves nothing.
    assert snapshot[("first", "running")] > 0, snapshot
    assert snapshot[("pause", "waiting_for_timer")] > 0, snapshot
    # Down until the late timer is overdue: it must fire on start-up, not be lost.
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.5)

    with (
        running_server(url, env=env, token=token, args=["--workers", "8"]) as second,
        second.client() as client,
    ):
        restarted = datetime.now(UTC)
        fired = settle(client, late, late_id)
        bodies = {i: settle(client, name, i) for i in ids}
        logs = {i: events(client, name, i) for i in ids}
        late_events = events(client, late, late_id)

    assert fired["state"] == "completed"
    late_step = step_of(fired, "late")
    assert moment(late_step["completed_at"]) >= max(due, restarted - timedelta(seconds=1))
    assert [(e["step_id"], e["actor"]) for e in late_events if e["type"] == "step.completed"] == [
        ("late", "timer")
    ]
    assert {i: b["state"] for i, b in bodies.items()} == dict.fromkeys(ids, "completed")
    for instance_id, found in logs.items():
        assert completions(found) == {"first": 1, "pause": 1, "last": 1}, (instance_id, found)
        timer = [e for e in found if e["type"] == "step.completed" and e["actor"] == "timer"]
        assert [e["step_id"] for e in timer] == ["pause"], instance_id
        assert [e["type"] for e in found].count("instance.completed") == 1
    runs = Counter((folder / "runs.log").read_text().splitlines())
    assert len(runs) == INSTANCES * 2
    assert any(n > 1 for n in runs.values()), "no script was cut off by the crash and rerun"


LONGER_THAN_THE_LEASE = """\
import json, os, pathlib, sys, time
json.load(sys.stdin)
with open(pathlib.Path(__file__).with_name("runs.log"), "a") as log:
    log.write(os.environ["OPENSOP_INSTANCE_ID"] + "\\n")
time.sleep(4)
print(json.dumps({}))
"""


@pytest.mark.slow
def test_a_script_longer_than_the_job_lease_runs_once_among_two_runners(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    write_script(folder, "long.py", LONGER_THAN_THE_LEASE)
    url = f"sqlite:///{tmp_path / 'opensop.db'}"
    # The runner renews its lease while the script runs; without that, the other runner
    # would take the job after 2 s and run the script a second time.
    env = {"OPENSOP_PROCESS_DIR": str(folder), "OPENSOP_JOB_LEASE_SECONDS": "2"}
    name = unique("long")

    with (
        running_server(url, env=env, args=["--workers", "2"]) as server,
        running_worker(url, concurrency=2, env=env),
        server.client() as client,
    ):
        register(client, process(name, [automated("work", "long.py")]))
        ids = [start(client, name)["id"] for _ in range(3)]
        bodies = [settle(client, name, i) for i in ids]
        found = {i: events(client, name, i) for i in ids}

    assert [body["state"] for body in bodies] == ["completed"] * 3
    assert Counter((folder / "runs.log").read_text().split()) == dict.fromkeys(ids, 1)
    assert all(completions(log) == {"work": 1} for log in found.values())
