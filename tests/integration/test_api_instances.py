"""Reading an instance and its steps, and cancelling it."""

from __future__ import annotations

import httpx
import pytest
from tests.support.api import (
    ULID,
    UTC_TIMESTAMP,
    assert_error,
    form,
    instance,
    process,
    register,
    start,
    step_states,
    submit,
    submitted,
    unique,
)

INSTANCE_KEYS = {
    "id",
    "process",
    "version",
    "state",
    "inputs",
    "outputs",
    "started_at",
    "completed_at",
    "error",
    "steps",
}
STEP_KEYS = {
    "id",
    "name",
    "type",
    "state",
    "sub_state",
    "inputs",
    "outputs",
    "decided_by",
    "confidence",
    "attempt",
    "error",
    "started_at",
    "completed_at",
}
UNKNOWN_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"


@pytest.fixture
def mixed(client: httpx.Client) -> str:
    """form → approval → worker, with named steps and a process input."""
    name = unique("mixed")
    register(
        client,
        process(
            name,
            [
                form(
                    "collect",
                    {"name": "amount", "type": "number", "required": True},
                    name="Collect the amount",
                    inputs=[{"name": "who", "from": "process.inputs.who"}],
                ),
                {"id": "approve", "name": "Approve it", "type": "approval"},
                {
                    "id": "book",
                    "type": "automated",
                    "outputs": [{"name": "ref", "type": "string", "required": True}],
                },
            ],
            inputs=[{"name": "who", "type": "string", "required": True}],
        ),
    )
    return name


def test_an_instance_reads_back_with_its_steps(client: httpx.Client, mixed: str) -> None:
    started = start(client, mixed, {"who": "Ana"})

    response = client.get(f"/sop/{mixed}/{started['id']}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= INSTANCE_KEYS
    assert body["id"] == started["id"]
    assert (body["process"], body["version"], body["state"]) == (mixed, "1.0", "running")
    assert body["inputs"] == {"who": "Ana"}
    assert body["outputs"] is None or body["outputs"] == {}
    assert body["started_at"] == started["started_at"]
    assert (body["completed_at"], body["error"]) == (None, None)
    assert [step["id"] for step in body["steps"]] == ["collect", "approve", "book"]


def test_steps_are_listed_in_definition_order_with_every_field(
    client: httpx.Client, mixed: str
) -> None:
    instance_id = start(client, mixed, {"who": "Ana"})["id"]
    submitted(
        client, mixed, instance_id, "collect", {"amount": 10}, decided_by="human:ana", confidence=1
    )

    response = client.get(f"/sop/{mixed}/{instance_id}/steps")

    assert response.status_code == 200
    collect, approve, book = response.json()
    for step in (collect, approve, book):
        assert set(step) >= STEP_KEYS, step
    assert (collect["id"], collect["name"], collect["type"]) == (
        "collect",
        "Collect the amount",
        "form",
    )
    assert (collect["state"], collect["sub_state"]) == ("completed", None)
    assert collect["inputs"] == {"who": "Ana"}
    assert collect["outputs"] == {"amount": 10}
    assert (collect["decided_by"], collect["confidence"]) == ("human:ana", 1)
    assert (collect["attempt"], collect["error"]) == (1, None)
    assert UTC_TIMESTAMP.match(collect["started_at"])
    assert UTC_TIMESTAMP.match(collect["completed_at"])
    assert collect["started_at"] <= collect["completed_at"]
    assert (approve["name"], approve["type"]) == ("Approve it", "approval")
    assert (approve["state"], approve["sub_state"]) == ("active", "waiting_for_approval")
    assert UTC_TIMESTAMP.match(approve["started_at"]) and approve["completed_at"] is None
    assert (book["type"], book["state"], book["sub_state"]) == ("automated", "pending", None)
    assert (book["started_at"], book["completed_at"], book["outputs"]) == (None, None, None)
    assert book["attempt"] == 0


@pytest.mark.parametrize(
    "instance_id",
    [UNKNOWN_ID, "garbage", "0" * 25, "0" * 27, "01HZZZZZZZZZZZZZZZZZZZZZZ!", "%00"],
    ids=["unknown-ulid", "word", "short", "long", "punctuation", "nul"],
)
def test_an_unknown_or_malformed_id_is_404(
    client: httpx.Client, mixed: str, instance_id: str
) -> None:
    assert_error(client.get(f"/sop/{mixed}/{instance_id}"), 404, "not_found")
    assert_error(client.get(f"/sop/{mixed}/{instance_id}/steps"), 404, "not_found")


def test_an_instance_under_another_process_name_is_404(client: httpx.Client, mixed: str) -> None:
    instance_id = start(client, mixed, {"who": "Ana"})["id"]

    assert_error(client.get(f"/sop/customer-onboarding/{instance_id}"), 404, "not_found")
    assert_error(client.get(f"/sop/customer-onboarding/{instance_id}/steps"), 404, "not_found")
    assert_error(client.get(f"/sop/{unique('nobody')}/{instance_id}"), 404, "not_found")
    assert_error(client.post(f"/sop/customer-onboarding/{instance_id}/cancel"), 404, "not_found")
    assert instance(client, mixed, instance_id)["state"] == "running"


def test_cancel_skips_the_remaining_steps(client: httpx.Client, mixed: str) -> None:
    instance_id = start(client, mixed, {"who": "Ana"})["id"]
    submitted(client, mixed, instance_id, "collect", {"amount": 10})

    response = client.post(
        f"/sop/{mixed}/{instance_id}/cancel", json={"reason": "customer withdrew"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["state"]) == (instance_id, "cancelled")
    assert UTC_TIMESTAMP.match(body["completed_at"])
    assert step_states(body) == {
        "collect": ("completed", None),
        "approve": ("skipped", None),
        "book": ("skipped", None),
    }
    again = instance(client, mixed, instance_id)
    assert again["state"] == "cancelled"
    assert step_states(again) == step_states(body)
    assert "customer withdrew" in str(again["error"])


def test_cancel_without_a_body_works(client: httpx.Client, mixed: str) -> None:
    instance_id = start(client, mixed, {"who": "Ana"})["id"]

    response = client.post(f"/sop/{mixed}/{instance_id}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "cancelled"


def test_cancel_is_irreversible(client: httpx.Client, mixed: str) -> None:
    instance_id = start(client, mixed, {"who": "Ana"})["id"]
    assert client.post(f"/sop/{mixed}/{instance_id}/cancel").status_code == 200

    assert_error(client.post(f"/sop/{mixed}/{instance_id}/cancel"), 422, "invalid_transition")
    assert_error(
        submit(client, mixed, instance_id, "collect", {"amount": 1}), 422, "invalid_transition"
    )
    assert instance(client, mixed, instance_id)["state"] == "cancelled"


def test_a_completed_instance_cannot_be_cancelled(client: httpx.Client) -> None:
    name = unique("finished")
    register(client, process(name, [form("only")]))
    instance_id = start(client, name)["id"]
    submitted(client, name, instance_id, "only", {"note": "x"})

    assert_error(client.post(f"/sop/{name}/{instance_id}/cancel"), 422, "invalid_transition")
    assert instance(client, name, instance_id)["state"] == "completed"


def test_cancelling_an_unknown_instance_is_404(client: httpx.Client, mixed: str) -> None:
    assert_error(client.post(f"/sop/{mixed}/{UNKNOWN_ID}/cancel"), 404, "not_found")
    assert_error(client.post(f"/sop/{mixed}/garbage/cancel"), 404, "not_found")


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [(b"{nope", 400, "invalid_payload"), (b'{"reason": 5}', 422, "invalid_inputs")],
    ids=["not-json", "reason-not-text"],
)
def test_a_bad_cancel_body_is_refused(
    client: httpx.Client, mixed: str, content: bytes, status: int, code: str
) -> None:
    instance_id = start(client, mixed, {"who": "Ana"})["id"]

    response = client.post(
        f"/sop/{mixed}/{instance_id}/cancel",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, status, code)
    assert instance(client, mixed, instance_id)["state"] == "running"


def test_the_audit_log_records_what_happened(client: httpx.Client, mixed: str) -> None:
    instance_id = start(client, mixed, {"who": "Ana"})["id"]
    submitted(client, mixed, instance_id, "collect", {"amount": 10})
    client.post(f"/sop/{mixed}/{instance_id}/cancel")

    response = client.get(f"/sop/{mixed}/{instance_id}/events")

    assert response.status_code == 200
    types = [event["type"] for event in response.json()]
    assert types[0] == "instance.started"
    assert types[-1] == "instance.cancelled"
    assert "step.completed" in types
    assert all(UTC_TIMESTAMP.match(event["created_at"]) for event in response.json())
    assert ULID.match(instance_id)
