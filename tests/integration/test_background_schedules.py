"""Schedule and interval triggers: instances start on time, once per tick however many
runners share the store, one catch-up instance after downtime, and discovery shows the
next run.

A scheduled process here has one automated step whose literal output is the tick's
``scheduled_for``, so each instance says which tick started it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.support.api import assert_error, form, instance, process, register, submitted, unique
from tests.support.background import automated, moment, poll, settle, step_of
from tests.support.server import running_server, running_worker

from opensop.clock import FakeClock
from opensop.config import Settings
from opensop.definition.cron import next_fire_time, parse_cron
from opensop.server import build_service
from opensop.service import Service
from opensop.store.tables import instances, jobs

INTERVAL = 5.0  # the shortest interval a definition may declare
STAMP = automated(
    "stamp",
    outputs=[
        {"name": "scheduled_for", "type": "string", "value": "${trigger.payload.scheduled_for}"}
    ],
)


def scheduled_process(name: str, **trigger: Any) -> dict[str, Any]:
    trigger = {"type": "interval", "interval": f"{INTERVAL:g}s"} | trigger
    return process(
        name,
        [STAMP],
        trigger=trigger,
        outputs=[
            {"name": "scheduled_for", "type": "string", "from": "steps.stamp.outputs.scheduled_for"}
        ],
    )


def ticks(client: httpx.Client, name: str) -> list[datetime]:
    """When each instance of ``name`` was scheduled for, oldest first."""
    response = client.get("/sop/instances", params={"process": name, "limit": "200"})
    assert response.status_code == 200, response.text
    bodies = [instance(client, name, row["id"]) for row in response.json()]
    assert all(body["state"] == "completed" for body in bodies), bodies
    return sorted(moment(body["outputs"]["scheduled_for"]) for body in bodies)


def listing(client: httpx.Client, name: str) -> dict[str, Any]:
    [row] = [row for row in client.get("/sop/").json() if row["name"] == name]
    return row


def status(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get("/sop/processes/status")
    assert response.status_code == 200, response.text
    [row] = [row for row in response.json()["processes"] if row["name"] == name]
    return row


def sleep_until(moment_: datetime) -> None:
    time.sleep(max(0.0, (moment_ - datetime.now(UTC)).total_seconds()))


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_three_runners_on_one_store_start_one_instance_per_tick(
    request: pytest.FixtureRequest, store: str
) -> None:
    url: str = request.getfixturevalue(f"{store}_url")
    name = unique("every-5s")
    with (
        running_server(url, args=["--workers", "2"]) as first,
        running_worker(url, concurrency=2),
        running_server(url, token=first.token, args=["--workers", "2"]),
        first.client() as client,
    ):
        published = moment(register(client, scheduled_process(name))["published_at"])
        assert moment(listing(client, name)["next_run_at"]) == published + timedelta(
            seconds=INTERVAL
        )
        poll(lambda: len(ticks(client, name)), lambda n: n >= 2, what="two ticks")
        # Past the 2nd tick, well before the 3rd.
        sleep_until(published + timedelta(seconds=2.5 * INTERVAL))
        fired = ticks(client, name)

    assert len(fired) == 2, fired
    assert fired[0] >= published + timedelta(seconds=INTERVAL)
    gap = (fired[1] - fired[0]).total_seconds()
    assert INTERVAL <= gap < INTERVAL + 2, fired


@pytest.mark.slow
def test_ticks_missed_while_down_start_one_catch_up_instance(sqlite_url: str) -> None:
    name = unique("catch-up")
    with running_server(sqlite_url) as first, first.client() as client:
        token = first.token
        register(client, scheduled_process(name))
        missed = moment(listing(client, name)["next_run_at"])
    # Down for more than two intervals: the ticks at `missed` and one interval later.
    sleep_until(missed + timedelta(seconds=INTERVAL + 0.5))

    with running_server(sqlite_url, token=token) as second, second.client() as client:
        restarted = datetime.now(UTC)
        [caught_up] = poll(lambda: ticks(client, name), bool, what="the catch-up instance")
        next_run = moment(listing(client, name)["next_run_at"])
        # Less than an interval after the restart: no instance for the other missed ticks.
        sleep_until(restarted + timedelta(seconds=INTERVAL - 1.5))
        fired = ticks(client, name)

    # Discovery shows milliseconds; the tick carries the exact due time.
    assert abs(caught_up - missed) < timedelta(milliseconds=1)
    assert fired == [caught_up]
    assert next_run >= restarted + timedelta(seconds=INTERVAL - 1)


def test_a_cron_schedule_with_a_time_zone_shows_its_next_run(client: httpx.Client) -> None:
    name = unique("cron")
    trigger = {"type": "schedule", "cron": "30 2 * * *", "timezone": "Europe/Madrid"}
    document = process(name, [form("review")], trigger=trigger)

    published = moment(register(client, document)["published_at"])

    expected = next_fire_time(parse_cron("30 2 * * *"), published, "Europe/Madrid")
    assert moment(listing(client, name)["next_run_at"]) == expected
    row = status(client, name)
    assert (row["state"], row["last_status"], row["active_instances"]) == ("scheduled", "never", 0)
    assert moment(row["next_run_at"]) == expected
    assert listing(client, name)["trigger"] == "schedule"


def test_a_process_without_a_schedule_has_no_next_run(client: httpx.Client) -> None:
    name = unique("plain")
    register(client, process(name, [form("review")]))

    assert listing(client, name)["next_run_at"] is None
    assert status(client, name)["state"] == "open"
    assert status(client, name)["next_run_at"] is None


@pytest.mark.parametrize(
    ("trigger", "path", "code"),
    [
        ({"cron": "30 2 * * *", "timezone": "Mars/Olympus"}, "timezone", "invalid_timezone"),
        ({"cron": "61 * * * *"}, "cron", "invalid_cron"),
        ({"cron": "* * *"}, "cron", "invalid_cron"),
    ],
)
def test_a_bad_schedule_is_refused(
    sqlite_client: httpx.Client, trigger: dict[str, str], path: str, code: str
) -> None:
    document = process(unique("bad-cron"), [form("x")], trigger={"type": "schedule", **trigger})

    body = assert_error(
        sqlite_client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    assert {(item["path"], item["code"]) for item in body["details"]} == {
        (f"process.trigger.{path}", code)
    }


def test_an_interval_shorter_than_five_seconds_is_refused(sqlite_client: httpx.Client) -> None:
    document = scheduled_process(unique("too-often"), interval="4s")

    body = assert_error(
        sqlite_client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    assert [item["path"] for item in body["details"]] == ["process.trigger.interval"]


def test_the_trigger_payload_is_readable_after_the_first_wait(
    sqlite_client: httpx.Client,
) -> None:
    name = unique("late-stamp")
    document = process(name, [form("first"), STAMP], trigger={"type": "interval", "interval": "5s"})
    register(sqlite_client, document)
    [row] = poll(
        lambda: sqlite_client.get("/sop/instances", params={"process": name}).json(),
        bool,
        what="the first tick",
        timeout=15,
    )

    done = submitted(sqlite_client, name, row["id"], "first", {"note": "go"})

    assert done["instance"]["state"] == "completed", done
    body = settle(sqlite_client, name, row["id"])
    assert step_of(body, "stamp")["outputs"]["scheduled_for"].endswith("Z")


# -- catch-up policy, with a fake clock on a real store (no waiting for minutes) ------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def service(tmp_path: Path, clock: FakeClock) -> Iterator[Service]:
    """The engine on a SQLite file, driven by hand: no runner, no HTTP."""
    built = build_service(Settings(database_url=f"sqlite:///{tmp_path / 'opensop.db'}"), clock)
    try:
        yield built
    finally:
        built.db.dispose()


def register_in(service: Service, document: dict[str, Any]) -> None:
    data = json.dumps(document).encode()
    service.register_in("default", data, filename="p.sop.json", base_dir=None)


def fire_due_jobs(service: Service) -> None:
    """What a runner does with due timers and ticks, once."""
    for job in service.work.claim_jobs("test-runner", 10, 30):
        service.work.apply_job(job)


def started_versions(service: Service, name: str) -> list[str]:
    with service.db.read() as conn:
        query = sa.select(instances.c.process_version).where(instances.c.process_name == name)
        return list(conn.execute(query).scalars())


def queued_ticks(service: Service) -> list[datetime]:
    with service.db.read() as conn:
        query = sa.select(jobs.c.due_at).where(
            jobs.c.kind == "schedule_tick", jobs.c.state == "queued"
        )
        return list(conn.execute(query).scalars())


@pytest.mark.parametrize(
    ("catch_up", "late_seconds", "starts"),
    [
        ("once", 3600, 1),  # an hour down: one instance for all the missed ticks
        ("skip", 3600, 0),  # missed: nothing, the schedule just goes on
        ("skip", 30, 1),  # late within the grace: not missed, it starts
    ],
)
def test_catch_up_decides_what_a_missed_tick_starts(
    service: Service, clock: FakeClock, catch_up: str, late_seconds: int, starts: int
) -> None:
    name = unique("fake")
    register_in(service, scheduled_process(name, interval="1m", catch_up=catch_up))
    assert queued_ticks(service) == [clock.now() + timedelta(minutes=1)]
    clock.advance(60 + late_seconds)

    fire_due_jobs(service)

    assert len(started_versions(service, name)) == starts
    assert queued_ticks(service) == [clock.now() + timedelta(minutes=1)]
    fire_due_jobs(service)  # nothing more is due
    assert len(started_versions(service, name)) == starts


def test_a_new_version_takes_the_schedule_over(service: Service, clock: FakeClock) -> None:
    name = unique("versions")
    for version in ("1.0", "2.0"):
        document = scheduled_process(name, interval="1m")
        document["process"]["version"] = version
        register_in(service, document)
    clock.advance(61)

    fire_due_jobs(service)

    assert started_versions(service, name) == ["2.0"]
    assert queued_ticks(service) == [clock.now() + timedelta(minutes=1)]
