"""`POST /sop/:name/:id/steps/:step_id/submit` and what the engine does after it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.support.api import (
    UTC_TIMESTAMP,
    assert_error,
    detail_codes,
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


def three_forms(client: httpx.Client) -> str:
    name = unique("three")
    register(client, process(name, [form("a"), form("b"), form("c")]))
    return name


def test_submit_answers_the_updated_step_and_the_instance(client: httpx.Client) -> None:
    name = three_forms(client)
    instance_id = start(client, name)["id"]

    response = submit(
        client, name, instance_id, "a", {"note": "first"}, decided_by="human:ana", confidence=0.93
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= STEP_KEYS
    assert (body["id"], body["state"], body["sub_state"]) == ("a", "completed", None)
    assert body["outputs"] == {"note": "first"}
    assert body["decided_by"] == "human:ana"
    assert body["confidence"] == 0.93
    assert UTC_TIMESTAMP.match(body["completed_at"])
    assert {"id", "state", "outputs", "completed_at"} <= set(body["instance"])
    assert body["instance"]["id"] == instance_id
    assert body["instance"]["state"] == "running"
    assert body["instance"]["completed_at"] is None

    [recorded] = [
        s for s in client.get(f"/sop/{name}/{instance_id}/steps").json() if s["id"] == "a"
    ]
    assert (recorded["decided_by"], recorded["confidence"]) == ("human:ana", 0.93)
    assert step_states(instance(client, name, instance_id)) == {
        "a": ("completed", None),
        "b": ("active", "waiting_for_input"),
        "c": ("pending", None),
    }


def test_the_last_submit_completes_the_instance(client: httpx.Client) -> None:
    name = three_forms(client)
    instance_id = start(client, name)["id"]
    for step_id in ("a", "b"):
        submitted(client, name, instance_id, step_id, {"note": step_id})

    last = submitted(client, name, instance_id, "c", {"note": "c"})

    assert last["instance"]["state"] == "completed"
    assert UTC_TIMESTAMP.match(last["instance"]["completed_at"])
    assert instance(client, name, instance_id)["state"] == "completed"


def test_submitting_a_pending_step_is_invalid_transition(client: httpx.Client) -> None:
    name = three_forms(client)
    instance_id = start(client, name)["id"]

    assert_error(
        submit(client, name, instance_id, "b", {"note": "too early"}), 422, "invalid_transition"
    )
    assert step_states(instance(client, name, instance_id))["b"] == ("pending", None)


def test_submitting_a_completed_step_again_is_invalid_transition(client: httpx.Client) -> None:
    name = three_forms(client)
    instance_id = start(client, name)["id"]
    submitted(client, name, instance_id, "a", {"note": "once"})

    assert_error(
        submit(client, name, instance_id, "a", {"note": "twice"}), 422, "invalid_transition"
    )
    [a] = [s for s in instance(client, name, instance_id)["steps"] if s["id"] == "a"]
    assert a["outputs"] == {"note": "once"}


def test_submitting_a_skipped_step_is_invalid_transition(client: httpx.Client) -> None:
    name = unique("skips")
    register(
        client,
        process(
            name,
            [form("maybe", condition="process.inputs.flag == true"), form("always")],
            inputs=[{"name": "flag", "type": "boolean", "required": True}],
        ),
    )
    instance_id = start(client, name, {"flag": False})["id"]
    assert step_states(instance(client, name, instance_id))["maybe"] == ("skipped", None)

    assert_error(
        submit(client, name, instance_id, "maybe", {"note": "x"}), 422, "invalid_transition"
    )


def test_submitting_to_a_completed_instance_is_invalid_transition(client: httpx.Client) -> None:
    name = unique("done")
    register(client, process(name, [form("only")]))
    instance_id = start(client, name)["id"]
    submitted(client, name, instance_id, "only", {"note": "x"})

    assert_error(
        submit(client, name, instance_id, "only", {"note": "y"}), 422, "invalid_transition"
    )


def test_outputs_that_fail_the_declaration_are_422_with_every_detail(
    client: httpx.Client,
) -> None:
    name = unique("outputs")
    register(
        client,
        process(
            name,
            [
                form(
                    "details",
                    {"name": "amount", "type": "number", "required": True, "minimum": 0},
                    {
                        "name": "currency",
                        "type": "enum",
                        "values": ["USD", "EUR"],
                        "required": True,
                    },
                    {"name": "approved", "type": "boolean"},
                )
            ],
        ),
    )
    instance_id = start(client, name)["id"]

    body = assert_error(
        submit(
            client,
            name,
            instance_id,
            "details",
            {"amount": -5, "currency": "usd", "approved": "true", "extra": 1},
        ),
        422,
        "invalid_inputs",
    )

    assert detail_codes(body) == {
        "amount": "invalid_format",
        "currency": "not_in_enum",
        "approved": "type_mismatch",
        "extra": "unknown_field",
    }
    missing = assert_error(submit(client, name, instance_id, "details", {}), 422, "invalid_inputs")
    assert detail_codes(missing) == {"amount": "required", "currency": "required"}
    assert step_states(instance(client, name, instance_id))["details"] == (
        "active",
        "waiting_for_input",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"outputs": []},
        {"outputs": "x"},
        {"outputs": {"note": "x"}, "confidence": 1.5},
        {"outputs": {"note": "x"}, "confidence": "high"},
        {"outputs": {"note": "x"}, "confidence": True},
        {"outputs": {"note": "x"}, "confidence": 10**400},  # too big for a float
        {"outputs": {"note": "x"}, "decided_by": 7},
        {"outputs": {"note": "x"}, "extra": 1},
    ],
    ids=[
        "list",
        "string",
        "confidence-high",
        "confidence-text",
        "confidence-bool",
        "confidence-huge-int",
        "decided-by-number",
        "unknown-key",
    ],
)
def test_a_malformed_submission_is_invalid_inputs(
    client: httpx.Client, body: dict[str, Any]
) -> None:
    name = three_forms(client)
    instance_id = start(client, name)["id"]

    response = client.post(f"/sop/{name}/{instance_id}/steps/a/submit", json=body)

    assert_error(response, 422, "invalid_inputs")
    assert step_states(instance(client, name, instance_id))["a"] == ("active", "waiting_for_input")


def test_a_submission_that_is_not_json_is_400(client: httpx.Client) -> None:
    name = three_forms(client)
    instance_id = start(client, name)["id"]

    response = client.post(
        f"/sop/{name}/{instance_id}/steps/a/submit",
        content=b"{oops",
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 400, "invalid_payload")


def test_instance_ids_are_case_insensitive_like_every_ulid(client: httpx.Client) -> None:
    name = three_forms(client)
    instance_id = start(client, name)["id"]

    response = client.post(
        f"/sop/{name}/{instance_id.lower()}/steps/a/submit", json={"outputs": {"note": "x"}}
    )

    assert response.status_code == 200, response.text
    assert response.json()["instance"]["id"] == instance_id
    assert client.get(f"/sop/{name}/{instance_id.lower()}").json()["id"] == instance_id
    # Letters outside ASCII are no ULID, even when upper-casing would make them one.
    assert_error(client.get(f"/sop/{name}/{'ß' * 26}"), 404, "not_found")


def test_unknown_step_instance_or_process_is_404(client: httpx.Client) -> None:
    name = three_forms(client)
    instance_id = start(client, name)["id"]

    assert_error(submit(client, name, instance_id, "zzz", {"note": "x"}), 404, "not_found")
    assert_error(
        submit(client, name, "01HZZZZZZZZZZZZZZZZZZZZZZZ", "a", {"note": "x"}), 404, "not_found"
    )
    assert_error(submit(client, name, "garbage", "a", {"note": "x"}), 404, "not_found")
    assert_error(
        submit(client, "customer-onboarding", instance_id, "a", {"note": "x"}), 404, "not_found"
    )


def test_approval_needs_a_boolean_approved(client: httpx.Client) -> None:
    name = unique("approval")
    register(
        client,
        process(
            name,
            [{"id": "sign-off", "type": "approval", "approvers": ["manager"]}],
            outputs=[{"name": "ok", "type": "boolean", "from": "steps.sign-off.outputs.approved"}],
        ),
    )
    instance_id = start(client, name)["id"]
    assert step_states(instance(client, name, instance_id))["sign-off"] == (
        "active",
        "waiting_for_approval",
    )

    missing = assert_error(
        submit(client, name, instance_id, "sign-off", {"notes": "hm"}), 422, "invalid_inputs"
    )
    assert detail_codes(missing) == {"approved": "required"}
    wrong = assert_error(
        submit(client, name, instance_id, "sign-off", {"approved": "yes"}), 422, "invalid_inputs"
    )
    assert detail_codes(wrong) == {"approved": "type_mismatch"}

    done = submitted(
        client,
        name,
        instance_id,
        "sign-off",
        {"approved": False, "notes": "Budget is closed"},
        decided_by="human:lee",
    )

    assert done["outputs"] == {"approved": False, "notes": "Budget is closed"}
    assert done["decided_by"] == "human:lee"
    assert done["instance"]["state"] == "completed"
    assert done["instance"]["outputs"] == {"ok": False}


def test_a_judgment_step_escalates_to_a_person_and_completes_on_submit(
    client: httpx.Client,
) -> None:
    name = unique("judgment")
    register(
        client,
        process(
            name,
            [
                {
                    "id": "decide",
                    "type": "judgment",
                    "judgment": {
                        "allow_agent": True,
                        "confidence_threshold": 0.9,
                        "escalate_to": "lead",
                    },
                    "outputs": [
                        {
                            "name": "verdict",
                            "type": "enum",
                            "values": ["accept", "reject"],
                            "required": True,
                        }
                    ],
                }
            ],
            outputs=[{"name": "verdict", "type": "string", "from": "steps.decide.outputs.verdict"}],
        ),
    )
    instance_id = start(client, name)["id"]
    assert step_states(instance(client, name, instance_id))["decide"] == ("active", "escalated")

    done = submitted(
        client,
        name,
        instance_id,
        "decide",
        {"verdict": "accept"},
        decided_by="human:lead",
        confidence=0.7,
    )

    assert (done["state"], done["confidence"]) == ("completed", 0.7)
    assert done["instance"]["state"] == "completed"
    assert done["instance"]["outputs"] == {"verdict": "accept"}


def test_literal_outputs_complete_automated_steps_at_once(client: httpx.Client) -> None:
    name = unique("literal")
    register(
        client,
        process(
            name,
            [
                {
                    "id": "hello",
                    "type": "automated",
                    "outputs": [
                        {"name": "greeting", "type": "string", "value": "Hello, ${inputs.who}!"}
                    ],
                },
                form(
                    "reply",
                    {"name": "answer", "type": "string", "required": True},
                    inputs=[{"name": "greeting", "from": "steps.hello.outputs.greeting"}],
                ),
                {
                    "id": "wrap",
                    "type": "automated",
                    "outputs": [
                        {
                            "name": "summary",
                            "type": "string",
                            "value": "${steps.hello.outputs.greeting} / "
                            "${steps.reply.outputs.answer}",
                        },
                        {"name": "count", "type": "number", "value": 2},
                    ],
                },
            ],
            inputs=[{"name": "who", "type": "string", "required": True}],
            outputs=[
                {"name": "summary", "type": "string", "from": "steps.wrap.outputs.summary"},
                {"name": "count", "type": "number", "from": "steps.wrap.outputs.count"},
            ],
        ),
    )

    started = start(client, name, {"who": "Ana"})

    assert started["state"] == "running"
    assert step_states(started) == {
        "hello": ("completed", None),
        "reply": ("active", "waiting_for_input"),
        "wrap": ("pending", None),
    }
    assert started["steps"][0]["outputs"] == {"greeting": "Hello, Ana!"}
    assert started["steps"][1]["inputs"] == {"greeting": "Hello, Ana!"}

    done = submitted(client, name, started["id"], "reply", {"answer": "Hi"})

    assert done["instance"]["state"] == "completed"
    assert done["instance"]["outputs"] == {"summary": "Hello, Ana! / Hi", "count": 2}
    final = instance(client, name, started["id"])
    assert final["steps"][2]["state"] == "completed"
    assert final["outputs"] == {"summary": "Hello, Ana! / Hi", "count": 2}


def test_a_process_of_literal_steps_only_completes_on_start(client: httpx.Client) -> None:
    name = unique("instant")
    register(
        client,
        process(
            name,
            [
                {
                    "id": "only",
                    "type": "automated",
                    "outputs": [{"name": "n", "type": "number", "value": 42}],
                }
            ],
            outputs=[{"name": "n", "type": "number", "from": "steps.only.outputs.n"}],
        ),
    )

    started = start(client, name)

    assert started["state"] == "completed"
    assert started["outputs"] == {"n": 42}
    assert UTC_TIMESTAMP.match(started["completed_at"])


EXIT_PROCESS = [
    form(
        "gate",
        {"name": "score", "type": "number", "required": True},
        exit_when="outputs.score < 0.4",
        exit_outputs={"reason": "score too low", "score": "${outputs.score}"},
    ),
    form("enrich"),
    form("finish"),
]


def test_exit_when_completes_early_with_exit_outputs(client: httpx.Client) -> None:
    name = unique("exit")
    register(
        client,
        process(
            name,
            EXIT_PROCESS,
            outputs=[
                {"name": "gate_score", "type": "number", "from": "steps.gate.outputs.score"},
            ],
        ),
    )
    instance_id = start(client, name)["id"]

    done = submitted(client, name, instance_id, "gate", {"score": 0.1})

    assert done["instance"]["state"] == "completed"
    assert done["instance"]["outputs"] == {
        "gate_score": 0.1,
        "reason": "score too low",
        "score": 0.1,
    }
    assert step_states(instance(client, name, instance_id)) == {
        "gate": ("completed", None),
        "enrich": ("skipped", None),
        "finish": ("skipped", None),
    }


def test_exit_when_false_continues(client: httpx.Client) -> None:
    name = unique("no-exit")
    register(client, process(name, EXIT_PROCESS))
    instance_id = start(client, name)["id"]

    done = submitted(client, name, instance_id, "gate", {"score": 0.9})

    assert done["instance"]["state"] == "running"
    assert step_states(instance(client, name, instance_id))["enrich"] == (
        "active",
        "waiting_for_input",
    )


def test_a_worker_step_waits_and_completes_on_submit(client: httpx.Client) -> None:
    name = unique("worker")
    register(
        client,
        process(
            name,
            [
                {
                    "id": "crunch",
                    "type": "automated",
                    "executor": "external",
                    "inputs": [{"name": "n", "from": "process.inputs.n"}],
                    "outputs": [{"name": "square", "type": "integer", "required": True}],
                }
            ],
            inputs=[{"name": "n", "type": "integer", "required": True}],
            outputs=[{"name": "square", "type": "integer", "from": "steps.crunch.outputs.square"}],
        ),
    )
    instance_id = start(client, name, {"n": 7})["id"]
    assert step_states(instance(client, name, instance_id))["crunch"] == (
        "active",
        "waiting_for_worker",
    )

    done = submitted(client, name, instance_id, "crunch", {"square": 49}, decided_by="worker:1")

    assert done["instance"]["outputs"] == {"square": 49}


def test_a_template_that_cannot_resolve_fails_the_instance(client: httpx.Client) -> None:
    name = unique("fails")
    register(
        client,
        process(
            name,
            [
                form("collect", {"name": "data", "type": "object", "required": True}),
                {
                    "id": "use",
                    "type": "automated",
                    "outputs": [
                        {
                            "name": "v",
                            "type": "string",
                            "value": "${steps.collect.outputs.data.key}",
                        }
                    ],
                },
                form("never"),
            ],
        ),
    )
    instance_id = start(client, name)["id"]

    done = submitted(client, name, instance_id, "collect", {"data": {}})

    assert done["instance"]["state"] == "failed"
    final = instance(client, name, instance_id)
    assert final["state"] == "failed"
    assert final["error"]
    use = final["steps"][1]
    assert use["state"] == "failed"
    assert use["error"]["code"] == "unresolved_reference"
    assert final["steps"][2]["state"] == "pending"
    listed = client.get("/sop/instances", params={"process": name, "state": "failed"}).json()
    assert [row["id"] for row in listed] == [instance_id]
    assert_error(
        submit(client, name, instance_id, "never", {"note": "x"}), 422, "invalid_transition"
    )
