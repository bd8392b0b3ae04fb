"""Concurrent requests on one server: one winner per step, distinct ids, consistent ends."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import httpx
import pytest
from tests.support.api import (
    ULID,
    assert_error,
    count,
    instance,
    one_form_process,
    register,
    start,
    unique,
)
from tests.support.server import Server


def all_at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run ``calls`` on their own threads, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture
def single_form(client: httpx.Client) -> str:
    name = unique("race")
    register(client, one_form_process(name))
    return name


@pytest.mark.parametrize("writers", [2, 10])
def test_concurrent_submits_to_one_step_have_exactly_one_winner(
    server: Server, client: httpx.Client, single_form: str, writers: int
) -> None:
    instance_id = start(client, single_form)["id"]
    clients = [server.client() for _ in range(writers)]
    url = f"/sop/{single_form}/{instance_id}/steps/fill/submit"

    responses = all_at_once(
        [
            partial(c.post, url, json={"outputs": {"note": f"writer {n}"}})
            for n, c in enumerate(clients)
        ]
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 422: writers - 1}, [r.text for r in responses]
    for response in responses:
        if response.status_code == 422:
            assert_error(response, 422, "invalid_transition")
    [winner] = [r for r in responses if r.status_code == 200]
    final = instance(client, single_form, instance_id)
    assert final["state"] == "completed"
    assert final["steps"][0]["outputs"] == winner.json()["outputs"]
    events = client.get(f"/sop/{single_form}/{instance_id}/events").json()
    assert [e["type"] for e in events].count("step.completed") == 1
    assert [e["type"] for e in events].count("instance.completed") == 1


def test_fifty_concurrent_starts_all_succeed_with_distinct_ids(
    server: Server, client: httpx.Client, single_form: str
) -> None:
    clients = [server.client() for _ in range(10)]
    url = f"/sop/{single_form}/start"

    responses = all_at_once(
        [partial(clients[n % 10].post, url, json={"inputs": {}}) for n in range(50)]
    )

    assert [r.status_code for r in responses] == [201] * 50, [
        r.text for r in responses if r.status_code != 201
    ]
    ids = [response.json()["id"] for response in responses]
    assert len(set(ids)) == 50
    assert all(ULID.match(instance_id) for instance_id in ids)
    assert count(client, process=single_form) == 50
    listed = client.get("/sop/instances", params={"process": single_form, "limit": 200}).json()
    assert {row["id"] for row in listed} == set(ids)


def test_concurrent_starts_with_one_idempotency_key_start_one_instance(
    server: Server, client: httpx.Client, single_form: str
) -> None:
    key = unique("key")
    url = f"/sop/{single_form}/start"
    clients = [server.client() for _ in range(8)]

    responses = all_at_once(
        [
            partial(c.post, url, json={"inputs": {}}, headers={"Idempotency-Key": key})
            for c in clients
        ]
    )

    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert count(client, process=single_form) == 1


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_cancel_and_submit_end_consistently(
    server: Server, client: httpx.Client, single_form: str, round_: int
) -> None:
    instance_id = start(client, single_form)["id"]
    submitter, canceller = server.client(), server.client()
    base = f"/sop/{single_form}/{instance_id}"

    submitted, cancelled = all_at_once(
        [
            lambda: submitter.post(f"{base}/steps/fill/submit", json={"outputs": {"note": "x"}}),
            lambda: canceller.post(f"{base}/cancel", json={"reason": "race"}),
        ]
    )

    assert sorted([submitted.status_code, cancelled.status_code]) == [200, 422], (
        submitted.text,
        cancelled.text,
    )
    final = instance(client, single_form, instance_id)
    expected = "completed" if submitted.status_code == 200 else "cancelled"
    assert final["state"] == expected
    assert final["steps"][0]["state"] == ("completed" if expected == "completed" else "skipped")
    types = [e["type"] for e in client.get(f"{base}/events").json()]
    assert not {"instance.completed", "instance.cancelled"} <= set(types), types
    assert types.count(f"instance.{expected}") == 1


def test_concurrent_registrations_of_one_version_publish_it_once(
    server: Server, client: httpx.Client
) -> None:
    name = unique("publish")
    same = one_form_process(name)
    different = one_form_process(name, description="another text")
    clients = [server.client() for _ in range(8)]

    responses = all_at_once(
        [
            partial(c.post, "/sop/processes/register", json=same if n % 2 else different)
            for n, c in enumerate(clients)
        ]
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses[201] == 1, [r.text for r in responses]
    assert set(statuses) <= {200, 201, 409}, [r.text for r in responses]
    [winner] = [r for r in responses if r.status_code == 201]
    published = client.get(f"/sop/{name}/schema").json()
    # Requests with the winner's content are 200; the others are version conflicts.
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "version_conflict")
    assert published["version"] == winner.json()["version"] == "1.0"
