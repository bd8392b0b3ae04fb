"""External workers: claim waiting automated steps under a lease, keep it alive, submit
or fail with it, and see the step come back after a lease runs out or a retry backoff.

Every claim names the test's own process, so steps of other tests on the shared server
are never taken.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.support.api import (
    ERROR_KEYS,
    UTC_TIMESTAMP,
    assert_error,
    instance,
    process,
    register,
    start,
    submit,
    unique,
)
from tests.support.background import automated, events, moment, poll, settle, step_of
from tests.support.server import Server

CLAIM_KEYS = {
    "step_id",
    "instance_id",
    "process",
    "version",
    "inputs",
    "attempt",
    "lease_token",
    "lease_expires_at",
}
DONE = {"done": True}


def worker_process(client: httpx.Client, label: str = "worker", **step: Any) -> str:
    """Register a process whose one step ``work`` waits for a worker; its name."""
    name = unique(label)
    work = automated(
        "work",
        inputs={"n": "${inputs.n}"},
        outputs=[{"name": "done", "type": "boolean", "required": True}],
        **step,
    )
    register(client, process(name, [work], inputs=[{"name": "n", "type": "integer"}]))
    return name


def claim(client: httpx.Client, name: str, worker: str = "w1", **body: Any) -> list[Any]:
    response = client.post("/sop/steps/claim", json={"worker": worker, "process": name, **body})
    assert response.status_code == 200, response.text
    claimed: list[Any] = response.json()
    return claimed


def pending_ids(client: httpx.Client, name: str) -> set[str]:
    response = client.get("/sop/steps/pending")
    assert response.status_code == 200, response.text
    return {row["instance_id"] for row in response.json() if row["process"] == name}


def heartbeat(client: httpx.Client, token: str, **body: Any) -> httpx.Response:
    return client.post("/sop/steps/heartbeat", json={"lease_token": token, **body})


def fail(client: httpx.Client, name: str, instance_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/sop/{name}/{instance_id}/steps/work/fail", json=body)


def test_a_claim_leases_a_waiting_step_to_one_worker(client: httpx.Client) -> None:
    name = worker_process(client)
    instance_id = start(client, name, {"n": 7})["id"]
    assert pending_ids(client, name) == {instance_id}
    before = datetime.now(UTC)

    [claimed] = claim(client, name, lease_seconds=30, limit=5)

    assert set(claimed) == CLAIM_KEYS
    assert claimed["step_id"] == "work"
    assert claimed["instance_id"] == instance_id
    assert (claimed["process"], claimed["version"]) == (name, "1.0")
    assert claimed["inputs"] == {"n": 7}
    assert claimed["attempt"] == 1
    assert isinstance(claimed["lease_token"], str) and len(claimed["lease_token"]) >= 16
    assert UTC_TIMESTAMP.match(claimed["lease_expires_at"])
    expires = moment(claimed["lease_expires_at"])
    assert before + timedelta(seconds=29) < expires <= datetime.now(UTC) + timedelta(seconds=30)
    assert pending_ids(client, name) == set()
    assert claim(client, name) == []
    assert claim(client, name, worker="w2", limit=100) == []


def test_a_claim_takes_at_most_limit_steps_each_once(client: httpx.Client) -> None:
    name = worker_process(client)
    started = {start(client, name, {"n": n})["id"] for n in range(3)}

    first = claim(client, name, limit=2)
    second = claim(client, name, worker="w2", limit=5)

    assert len(first) == 2
    assert len(second) == 1
    assert {row["instance_id"] for row in first + second} == started
    assert claim(client, name, step_ids=["work"]) == []


def test_a_claim_filters_by_step_id(client: httpx.Client) -> None:
    name = worker_process(client)
    instance_id = start(client, name, {"n": 1})["id"]

    assert claim(client, name, step_ids=["elsewhere"]) == []
    [claimed] = claim(client, name, step_ids=["elsewhere", "work"])
    assert claimed["instance_id"] == instance_id


def test_a_heartbeat_extends_a_live_lease(client: httpx.Client) -> None:
    name = worker_process(client)
    start(client, name, {"n": 1})
    [claimed] = claim(client, name, lease_seconds=30)

    response = heartbeat(client, claimed["lease_token"], lease_seconds=600)

    assert response.status_code == 200, response.text
    assert set(response.json()) == {"lease_expires_at"}
    extended = moment(response.json()["lease_expires_at"])
    assert extended > moment(claimed["lease_expires_at"]) + timedelta(seconds=500)


@pytest.mark.parametrize("token", ["sk_not_a_lease", "x"])
def test_a_heartbeat_for_an_unknown_lease_is_lease_lost(client: httpx.Client, token: str) -> None:
    assert_error(heartbeat(client, token), 409, "lease_lost")


def test_a_leased_step_takes_a_submission_only_with_its_token(client: httpx.Client) -> None:
    name = worker_process(client)
    instance_id = start(client, name, {"n": 1})["id"]
    [claimed] = claim(client, name)
    token = claimed["lease_token"]

    assert_error(submit(client, name, instance_id, "work", DONE), 409, "lease_lost")
    assert_error(
        submit(client, name, instance_id, "work", DONE, lease_token="stale"), 409, "lease_lost"
    )
    accepted = submit(client, name, instance_id, "work", DONE, lease_token=token)

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "completed"
    assert accepted.json()["instance"]["state"] == "completed"
    assert_error(heartbeat(client, token), 409, "lease_lost")  # the step moved on
    again = submit(client, name, instance_id, "work", DONE, lease_token=token)
    assert_error(again, 422, "invalid_transition")


def test_an_expired_lease_returns_the_step_to_another_worker(client: httpx.Client) -> None:
    name = worker_process(client)
    instance_id = start(client, name, {"n": 1})["id"]
    [first] = claim(client, name, worker="slow", lease_seconds=1)
    assert claim(client, name, worker="fast") == []

    [second] = poll(
        lambda: claim(client, name, worker="fast"), bool, what="the lease to run out", timeout=10
    )

    assert second["instance_id"] == instance_id
    assert second["lease_token"] != first["lease_token"]
    assert moment(second["lease_expires_at"]) > moment(first["lease_expires_at"])
    stale = first["lease_token"]
    assert_error(heartbeat(client, stale), 409, "lease_lost")
    assert_error(
        submit(client, name, instance_id, "work", DONE, lease_token=stale), 409, "lease_lost"
    )
    assert_error(fail(client, name, instance_id, error="late", lease_token=stale), 409)
    done = submit(client, name, instance_id, "work", DONE, lease_token=second["lease_token"])
    assert done.status_code == 200, done.text


def test_an_expired_lease_shows_the_step_as_pending_again(client: httpx.Client) -> None:
    name = worker_process(client)
    instance_id = start(client, name, {"n": 1})["id"]
    claim(client, name, lease_seconds=1)

    poll(lambda: pending_ids(client, name), bool, what="the step to be pending", timeout=10)

    # Nobody holds it now: a submission without a token is taken.
    done = submit(client, name, instance_id, "work", DONE)
    assert done.status_code == 200, done.text


def test_a_retryable_failure_offers_the_step_again_after_its_backoff(
    client: httpx.Client,
) -> None:
    name = worker_process(client, retry={"max": 1, "backoff": "fixed", "initial": "1s"})
    instance_id = start(client, name, {"n": 1})["id"]
    [claimed] = claim(client, name)

    response = fail(
        client, name, instance_id, error="upstream down", lease_token=claimed["lease_token"]
    )
    failed_at = time.monotonic()

    assert response.status_code == 200, response.text
    step = response.json()
    assert (step["state"], step["sub_state"], step["attempt"]) == (
        "active",
        "waiting_for_worker",
        2,
    )
    assert step["error"]["message"] == "upstream down"
    assert response.json()["instance"]["state"] == "running"
    assert claim(client, name) == []  # backing off
    assert pending_ids(client, name) == set()
    [again] = poll(lambda: claim(client, name), bool, what="the backoff to end", timeout=10)
    assert time.monotonic() - failed_at >= 1.0
    assert (again["instance_id"], again["attempt"]) == (instance_id, 2)

    last = fail(client, name, instance_id, error="still down", lease_token=again["lease_token"])

    assert last.status_code == 200, last.text
    assert last.json()["state"] == "failed"
    body = instance(client, name, instance_id)
    assert body["state"] == "failed"
    assert body["error"] == {"step_id": "work", "code": "worker_error", "message": "still down"}
    kinds = [e["type"] for e in events(client, name, instance_id)]
    assert kinds.count("step.retry_scheduled") == 1
    assert kinds[-2:] == ["step.failed", "instance.failed"]


def test_a_non_retryable_failure_fails_the_instance_at_once(client: httpx.Client) -> None:
    name = worker_process(client, retry={"max": 5, "backoff": "fixed", "initial": "1s"})
    instance_id = start(client, name, {"n": 1})["id"]
    [claimed] = claim(client, name)

    response = fail(
        client,
        name,
        instance_id,
        error="bad input, will never work",
        retryable=False,
        lease_token=claimed["lease_token"],
    )

    assert response.status_code == 200, response.text
    assert (response.json()["state"], response.json()["attempt"]) == ("failed", 1)
    assert response.json()["instance"]["state"] == "failed"
    body = instance(client, name, instance_id)
    assert body["error"]["code"] == "worker_error"
    assert step_of(body, "work")["error"]["message"] == "bad input, will never work"
    assert claim(client, name) == []


def test_a_failure_report_needs_the_live_lease(client: httpx.Client) -> None:
    name = worker_process(client)
    instance_id = start(client, name, {"n": 1})["id"]
    claim(client, name)

    assert_error(fail(client, name, instance_id, error="not mine"), 409, "lease_lost")
    assert_error(fail(client, name, instance_id, error="x", lease_token="nope"), 409, "lease_lost")
    assert step_of(instance(client, name, instance_id), "work")["state"] == "active"


def test_a_failed_worker_step_can_be_retried_and_claimed_again(client: httpx.Client) -> None:
    name = worker_process(client)
    instance_id = start(client, name, {"n": 1})["id"]
    [claimed] = claim(client, name)
    fail(client, name, instance_id, error="boom", lease_token=claimed["lease_token"])
    assert instance(client, name, instance_id)["state"] == "failed"

    retried = client.post(f"/sop/{name}/{instance_id}/steps/work/retry")

    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "running"
    assert step_of(retried.json(), "work")["sub_state"] == "waiting_for_worker"
    [again] = claim(client, name)
    assert (again["instance_id"], again["attempt"]) == (instance_id, 2)
    done = submit(client, name, instance_id, "work", DONE, lease_token=again["lease_token"])
    assert done.json()["instance"]["state"] == "completed"


def test_a_failure_report_for_a_step_no_worker_runs_is_invalid_transition(
    client: httpx.Client,
) -> None:
    name = unique("form")
    register(client, process(name, [{"id": "work", "type": "form", "outputs": []}]))
    instance_id = start(client, name)["id"]

    response = fail(client, name, instance_id, error="not a worker step")

    assert_error(response, 422, "invalid_transition")
    assert step_of(instance(client, name, instance_id), "work")["state"] == "active"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"worker": "w", "lease_seconds": 0}, "lease_seconds"),
        ({"worker": "w", "lease_seconds": 3601}, "lease_seconds"),
        ({"worker": "w", "lease_seconds": "60"}, "lease_seconds"),
        ({"worker": "w", "limit": 101}, "limit"),
        ({"worker": "w", "limit": 0}, "limit"),
        ({"worker": "w", "limit": True}, "limit"),
        ({}, "worker"),
        ({"worker": ""}, "worker"),
        ({"worker": 7}, "worker"),
        ({"worker": "w", "process": 3}, "process"),
        ({"worker": "w", "step_ids": "work"}, "step_ids"),
        ({"worker": "w", "step_ids": ["s"] * 501}, "step_ids"),  # PostgreSQL caps parameters
        ({"worker": "w", "lease": 60}, "lease"),
    ],
    ids=lambda value: str(value) if isinstance(value, str) else None,
)
def test_a_bad_claim_is_invalid_inputs_naming_the_field(
    sqlite_client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = sqlite_client.post("/sop/steps/claim", json=body)

    error = assert_error(response, 422, "invalid_inputs")
    assert field in {item["field"] for item in error["details"]}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sop/steps/heartbeat", {}),
        ("/sop/steps/heartbeat", {"lease_token": "t", "lease_seconds": 0}),
    ],
)
def test_a_bad_heartbeat_is_invalid_inputs(
    sqlite_client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    assert_error(sqlite_client.post(path, json=body), 422, "invalid_inputs")


def test_a_bad_failure_report_is_invalid_inputs(sqlite_client: httpx.Client) -> None:
    name = worker_process(sqlite_client)
    instance_id = start(sqlite_client, name, {"n": 1})["id"]

    for body in ({}, {"error": "  "}, {"error": "x", "retryable": "no"}, {"error": "x", "y": 1}):
        assert_error(fail(sqlite_client, name, instance_id, **body), 422, "invalid_inputs")
    assert_error(sqlite_client.post("/sop/steps/claim", content=b"{nope"), 400, "invalid_payload")


@pytest.fixture
def viewer(server_on_sqlite: Server, sqlite_client: httpx.Client) -> Iterator[httpx.Client]:
    """A client whose token has only the view scope."""
    created = sqlite_client.post("/workspace/tokens", json={"name": "viewer", "scopes": ["view"]})
    assert created.status_code == 201, created.text
    with server_on_sqlite.client(token=created.json()["token"]) as client:
        yield client


def test_a_view_token_cannot_claim_heartbeat_fail_or_retry(
    sqlite_client: httpx.Client, viewer: httpx.Client
) -> None:
    name = worker_process(sqlite_client)
    instance_id = start(sqlite_client, name, {"n": 1})["id"]
    base = f"/sop/{name}/{instance_id}/steps/work"

    for path, body in [
        ("/sop/steps/claim", {"worker": "w", "process": name}),
        ("/sop/steps/heartbeat", {"lease_token": "t"}),
        (f"{base}/fail", {"error": "x"}),
        (f"{base}/retry", {}),
    ]:
        response = viewer.post(path, json=body)
        error = assert_error(response, 403, "forbidden")
        assert set(error) <= ERROR_KEYS
    assert viewer.get("/sop/steps/pending").status_code == 200
    assert claim(sqlite_client, name)  # nothing was taken by the refused claim


def test_every_attempt_of_a_worker_step_is_bounded_by_its_timeout(
    client: httpx.Client,
) -> None:
    name = worker_process(
        client, timeout="2s", retry={"max": 1, "backoff": "fixed", "initial": "0.1s"}
    )
    instance_id = start(client, name, {"n": 1})["id"]
    [claimed] = claim(client, name)
    fail(client, name, instance_id, error="flaky", lease_token=claimed["lease_token"])
    # Attempt 2 is offered again after its backoff, and no worker takes it.

    body = settle(client, name, instance_id, timeout=15)

    assert body["state"] == "failed"
    assert body["error"]["code"] == "timeout"
    assert step_of(body, "work")["attempt"] == 2
    # Retried by hand, the step waits for a worker again, with the same bound.
    retried = client.post(f"/sop/{name}/{instance_id}/steps/work/retry")
    assert retried.status_code == 200, retried.text
    again = settle(client, name, instance_id, timeout=15)
    assert (again["state"], again["error"]["code"]) == ("failed", "timeout")
    assert step_of(again, "work")["attempt"] == 3
