"""`GET /sop/instances` (filters, limits, offset and cursor pages) and `/sop/steps/pending`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.support.api import (
    UTC_TIMESTAMP,
    assert_error,
    form,
    one_form_process,
    process,
    register,
    start,
    submitted,
    unique,
)

SUMMARY_KEYS = {"id", "process", "version", "state", "started_at", "completed_at"}
Starter = Callable[[int], list[str]]


@pytest.fixture
def fresh(client: httpx.Client) -> tuple[str, Starter]:
    """A new process and a function that starts ``n`` instances of it (ids in start order)."""
    name = unique("listed")
    register(client, one_form_process(name))

    def start_many(n: int) -> list[str]:
        return [start(client, name)["id"] for _ in range(n)]

    return name, start_many


def page(client: httpx.Client, **params: Any) -> tuple[list[dict[str, Any]], int]:
    response = client.get("/sop/instances", params=params)
    assert response.status_code == 200, response.text
    return response.json(), int(response.headers["X-Total-Count"])


def test_instances_are_listed_newest_first(
    client: httpx.Client, fresh: tuple[str, Starter]
) -> None:
    name, start_many = fresh
    ids = start_many(4)

    rows, total = page(client, process=name)

    assert total == 4
    assert {row["id"] for row in rows} == set(ids)
    assert [row["id"] for row in rows] == sorted(ids, reverse=True)
    started = [row["started_at"] for row in rows]
    assert started == sorted(started, reverse=True)
    for row in rows:
        assert set(row) == SUMMARY_KEYS
        assert (row["process"], row["version"], row["state"]) == (name, "1.0", "running")
        assert UTC_TIMESTAMP.match(row["started_at"]) and row["completed_at"] is None


def test_the_list_filters_by_process_and_state(
    client: httpx.Client, fresh: tuple[str, Starter]
) -> None:
    name, start_many = fresh
    running, completed, cancelled = start_many(3)
    submitted(client, name, completed, "fill", {"note": "x"})
    assert client.post(f"/sop/{name}/{cancelled}/cancel").status_code == 200

    def ids(**params: str) -> list[str]:
        rows, total = page(client, process=name, **params)
        assert total == len(rows)
        return [row["id"] for row in rows]

    assert ids(state="running") == [running]
    assert ids(state="completed") == [completed]
    assert ids(state="cancelled") == [cancelled]
    assert ids(state="failed") == []
    assert ids(state="pending") == []
    [row] = page(client, process=name, state="completed")[0]
    assert UTC_TIMESTAMP.match(row["completed_at"])
    assert page(client, process=unique("nobody")) == ([], 0)


@pytest.mark.parametrize("state", ["bogus", "RUNNING", "", "done"])
def test_an_unknown_state_is_422(client: httpx.Client, state: str) -> None:
    assert_error(client.get("/sop/instances", params={"state": state}), 422)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "201"},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"offset": "x"},
    ],
    ids=["limit-201", "limit-0", "limit-negative", "limit-text", "offset-negative", "offset-text"],
)
def test_out_of_range_paging_is_422(client: httpx.Client, params: dict[str, str]) -> None:
    assert_error(client.get("/sop/instances", params=params), 422)


def test_limit_defaults_to_50_and_goes_up_to_200(
    client: httpx.Client, fresh: tuple[str, Starter]
) -> None:
    name, start_many = fresh
    ids = sorted(start_many(55), reverse=True)

    default, total = page(client, process=name)
    assert (len(default), total) == (50, 55)
    assert [row["id"] for row in default] == ids[:50]
    everything, total = page(client, process=name, limit=200)
    assert (len(everything), total) == (55, 55)
    rest, total = page(client, process=name, offset=50)
    assert [row["id"] for row in rest] == ids[50:]
    assert total == 55
    middle, _ = page(client, process=name, limit=10, offset=20)
    assert [row["id"] for row in middle] == ids[20:30]
    assert page(client, process=name, offset=55) == ([], 55)


def test_the_cursor_neither_skips_nor_repeats_while_instances_arrive(
    client: httpx.Client, fresh: tuple[str, Starter]
) -> None:
    name, start_many = fresh
    original = start_many(12)
    seen: list[str] = []
    arrived: list[str] = []
    cursor: str | None = None

    for _ in range(10):
        params: dict[str, Any] = {"process": name, "limit": 5}
        if cursor is not None:
            params["after"] = cursor
        rows, _ = page(client, **params)
        if not rows:
            break
        seen += [row["id"] for row in rows]
        cursor = rows[-1]["id"]
        arrived += start_many(2)  # newer rows arrive between pages

    assert len(seen) == len(set(seen)), "a row was repeated"
    assert sorted(seen, reverse=True) == seen
    assert set(seen) == set(original), "a row was skipped (or a newer one leaked in)"
    assert not set(arrived) & set(seen)
    assert page(client, process=name)[1] == len(original) + len(arrived)


def test_the_unfiltered_list_is_capped_at_the_default_limit(
    client: httpx.Client, fresh: tuple[str, Starter]
) -> None:
    _, start_many = fresh
    start_many(2)

    everything, total = page(client)

    assert total >= 2
    assert len(everything) <= 50


def test_pending_lists_worker_steps_with_their_inputs(client: httpx.Client) -> None:
    name = unique("pending")
    register(
        client,
        process(
            name,
            [
                form("prepare", {"name": "size", "type": "integer", "required": True}),
                {
                    "id": "resize",
                    "type": "automated",
                    "inputs": [
                        {"name": "size", "from": "steps.prepare.outputs.size"},
                        {"name": "label", "from": "process.inputs.label"},
                    ],
                    "outputs": [{"name": "done", "type": "boolean", "required": True}],
                },
            ],
            inputs=[{"name": "label", "type": "string"}],
        ),
    )
    instance_id = start(client, name, {"label": "big"})["id"]

    def mine() -> list[dict[str, Any]]:
        response = client.get("/sop/steps/pending")
        assert response.status_code == 200
        assert isinstance(response.json(), list)
        return [item for item in response.json() if item["process"] == name]

    assert mine() == []  # a form waits for a person, not a worker
    submitted(client, name, instance_id, "prepare", {"size": 3})
    assert mine() == [
        {
            "step_id": "resize",
            "instance_id": instance_id,
            "process": name,
            "inputs": {"size": 3, "label": "big"},
        }
    ]
    other = start(client, name, {"label": "small"})["id"]
    submitted(client, name, other, "prepare", {"size": 1})
    assert {item["instance_id"] for item in mine()} == {instance_id, other}

    submitted(client, name, instance_id, "resize", {"done": True})
    assert client.post(f"/sop/{name}/{other}/cancel").status_code == 200
    assert mine() == []


def test_every_pending_item_has_the_documented_shape(client: httpx.Client) -> None:
    name = unique("shape")
    register(client, process(name, [{"id": "work", "type": "automated"}]))
    start(client, name)

    items = client.get("/sop/steps/pending").json()

    assert items
    for item in items:
        assert set(item) == {"step_id", "instance_id", "process", "inputs"}, item
    assert any(item["process"] == name and item["step_id"] == "work" for item in items)


def test_form_steps_do_not_show_as_pending(client: httpx.Client) -> None:
    name = unique("forms")
    register(client, process(name, [form("a")]))
    start(client, name)

    assert all(item["process"] != name for item in client.get("/sop/steps/pending").json())
