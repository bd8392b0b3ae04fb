"""A graceful stop hands job leases back: a runner stopped by SIGTERM kills the scripts it
was running and ends their leases at once, so the next runner reruns them right away
instead of waiting out the lease (a minute here, far longer than these tests take).

The store-level tests check what handing back may touch: only jobs still leased by the
runner that hands them back.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.support.api import process, register, start, unique
from tests.support.background import (
    alive,
    automated,
    completions,
    events,
    poll,
    settle,
    step_of,
    write_script,
)
from tests.support.server import running_server, running_worker, stop

from opensop.clock import FakeClock
from opensop.engine.jobs import JobKind, JobRequest, JobState
from opensop.service import Service
from opensop.store import jobs as job_store
from opensop.store.database import Database
from opensop.store.tables import jobs

LEASE_SECONDS = 60
# Far below the lease: only a handed-back lease lets the job run again this soon.
RERUN_DEADLINE_SECONDS = 20.0
# The first run records itself and then sleeps through the test; the second one finishes.
FIRST_RUN_HANGS = """\
import json, os, pathlib, sys, time
json.load(sys.stdin)
runs = pathlib.Path(__file__).with_name("runs.log")
with open(runs, "a") as log:
    log.write(os.environ["OPENSOP_ATTEMPT"] + " " + str(os.getpid()) + "\\n")
if len(runs.read_text().splitlines()) == 1:
    time.sleep(30)
print(json.dumps({"done": True}))
"""


def runs(folder: Path) -> list[tuple[str, int]]:
    """(OPENSOP_ATTEMPT, pid) of each run of the script so far."""
    path = folder / "runs.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(attempt, int(pid)) for attempt, pid in (line.split() for line in lines)]


def hanging_script_setup(tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """The script folder, a SQLite URL and the server environment (a long lease)."""
    folder = tmp_path / "scripts"
    write_script(folder, "hang.py", FIRST_RUN_HANGS)
    url = f"sqlite:///{tmp_path / 'opensop.db'}"
    env = {"OPENSOP_PROCESS_DIR": str(folder), "OPENSOP_JOB_LEASE_SECONDS": str(LEASE_SECONDS)}
    return folder, url, env


def wait_for_first_run(folder: Path) -> int:
    """The pid of the first run, once it has started."""
    [(_, pid)] = poll(lambda: runs(folder), lambda found: len(found) == 1, what="the first run")
    return pid


@pytest.mark.slow
def test_a_server_stopped_gracefully_hands_its_script_job_back_to_the_next(
    tmp_path: Path,
) -> None:
    folder, url, env = hanging_script_setup(tmp_path)
    name = unique("stop")

    with running_server(url, env=env) as first, first.client() as client:
        token = first.token
        register(client, process(name, [automated("work", "hang.py")]))
        instance_id = start(client, name)["id"]
        pid = wait_for_first_run(folder)
        stopping = time.monotonic()
        first.stop()
        stopped_in = time.monotonic() - stopping

    # Uvicorn exits by re-raising the SIGTERM once it has shut down: no SIGKILL was needed.
    assert first.process.returncode == -signal.SIGTERM, first.log()
    assert not alive(pid), "the stop left the script running"

    with running_server(url, env=env, token=token) as second, second.client() as client:
        restarted = time.monotonic()
        body = settle(client, name, instance_id, timeout=RERUN_DEADLINE_SECONDS)
        rerun_in = time.monotonic() - restarted
        found = events(client, name, instance_id)

    assert body["state"] == "completed", body
    assert step_of(body, "work")["outputs"] == {"done": True}
    # The same step attempt ran again (the job, not a retry of the step), once.
    assert [attempt for attempt, _ in runs(folder)] == ["1", "1"]
    assert completions(found) == {"work": 1}
    assert rerun_in < LEASE_SECONDS / 3, (stopped_in, rerun_in)


@pytest.mark.slow
def test_a_worker_stopped_gracefully_hands_its_script_job_to_a_worker_still_running(
    tmp_path: Path,
) -> None:
    folder, url, env = hanging_script_setup(tmp_path)
    name = unique("stop-worker")

    # The server runs no jobs itself: the first worker takes the job, the second one is
    # started only then, so it cannot have taken it first.
    with (
        running_server(url, env=env, args=["--workers", "0"]) as server,
        server.client() as client,
    ):
        register(client, process(name, [automated("work", "hang.py")]))
        with running_worker(url, env=env) as first:
            instance_id = start(client, name)["id"]
            pid = wait_for_first_run(folder)
            with running_worker(url, env=env):
                stopping = time.monotonic()
                stop(first.process)
                stopped_in = time.monotonic() - stopping
                first_log = first.log()
                body = settle(client, name, instance_id, timeout=RERUN_DEADLINE_SECONDS)
                rerun_in = time.monotonic() - stopping
        found = events(client, name, instance_id)

    assert first.process.returncode == 0, first_log
    assert not alive(pid), "the stop left the script running"
    assert body["state"] == "completed", body
    assert [attempt for attempt, _ in runs(folder)] == ["1", "1"]
    assert completions(found) == {"work": 1}
    assert rerun_in < LEASE_SECONDS / 3, (stopped_in, rerun_in)


# -- what hand_back touches ------------------------------------------------------------

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
LEASE = 30.0


@pytest.fixture
def service(database: Database) -> Iterator[Service]:
    yield Service(database, FakeClock(NOW))


def queue_ticks(service: Service, count: int) -> None:
    """``count`` due jobs without an instance (schedule ticks, never applied here)."""
    requests = [
        JobRequest(JobKind.SCHEDULE_TICK, NOW, payload={"process": f"p{n}"}) for n in range(count)
    ]
    rows = job_store.job_rows("ws", None, requests, NOW)
    service.db.run_write(lambda conn: job_store.enqueue(conn, rows))


def job_row(
    service: Service, job: job_store.Job
) -> sa.Row[tuple[str, str | None, datetime | None, int]]:
    with service.db.read() as conn:
        return conn.execute(
            sa.select(
                jobs.c.state, jobs.c.lease_owner, jobs.c.lease_expires_at, jobs.c.attempt
            ).where(jobs.c.id == job.id)
        ).one()


def test_handing_back_ends_only_the_leases_the_runner_still_holds(service: Service) -> None:
    work, clock = service.work, service.clock
    assert isinstance(clock, FakeClock)
    queue_ticks(service, 2)
    finished, lost = sorted(work.claim_jobs("runner-a", 2, LEASE), key=lambda job: job.id)
    work.apply_job_stale(finished)  # done: nothing left to hand back
    clock.advance(LEASE + 1)
    # Runner a stalled past its lease: runner b took `lost`, and keeps it.
    [taken] = work.claim_jobs("runner-b", 1, LEASE)
    assert taken.id == lost.id
    b_lease = job_row(service, taken)
    queue_ticks(service, 1)
    [held] = work.claim_jobs("runner-a", 1, LEASE)

    assert work.hand_back_jobs([finished, lost, held]) == 1

    done = job_row(service, finished)
    assert (done.state, done.lease_expires_at) == (JobState.DONE.value, None)
    assert job_row(service, lost) == b_lease
    assert job_row(service, held) == (
        JobState.LEASED.value,
        held.lease_owner,
        clock.now(),
        1,
    )
    assert work.hand_back_jobs([]) == 0


def test_a_handed_back_job_is_claimed_at_once_by_the_next_runner(service: Service) -> None:
    work, clock = service.work, service.clock
    assert isinstance(clock, FakeClock)
    queue_ticks(service, 1)
    [job] = work.claim_jobs("runner-a", 1, LEASE)
    clock.advance(1)
    assert work.claim_jobs("runner-b", 1, LEASE) == []  # a holds it for LEASE seconds
    assert work.next_due_at() == NOW + timedelta(seconds=LEASE)

    assert work.hand_back_jobs([job]) == 1

    assert work.next_due_at() == clock.now()
    clock.advance(0.001)
    [again] = work.claim_jobs("runner-b", 1, LEASE)
    assert (again.id, again.attempt) == (job.id, 2)
    assert again.lease_owner.startswith("runner-b/")
    # Runner a, stopping late, can no longer finish or hand back what b now holds.
    assert work.hand_back_jobs([job]) == 0
    assert job_row(service, again)[1] == again.lease_owner
