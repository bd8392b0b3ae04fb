"""Durable timers on a live server: wait steps, step timeouts with each on_timeout policy,
stale timeouts of steps that moved on, and process SLA warnings and breaches.

Timers are a second or two; a test waits for the effect with a generous deadline and
never asserts how fast it came, only that it did not come early.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.support.api import form, instance, process, register, start, submit, unique
from tests.support.background import (
    event_types,
    events,
    moment,
    poll,
    settle,
    step_of,
    wait_step,
)


def running(body: dict[str, Any]) -> bool:
    return body["state"] == "running"


def test_a_wait_step_completes_once_its_seconds_are_up(client: httpx.Client) -> None:
    name = unique("wait")
    register(client, process(name, [wait_step("pause", seconds=1), form("after")]))

    started = start(client, name)
    pause = step_of(started, "pause")
    assert (pause["state"], pause["sub_state"]) == ("active", "waiting_for_timer")
    due = moment(pause["due_at"])
    assert due == moment(pause["started_at"]) + timedelta(seconds=1)
    assert step_of(instance(client, name, started["id"]), "pause")["state"] == "active"

    body = settle(
        client,
        name,
        started["id"],
        until=lambda b: step_of(b, "pause")["state"] == "completed",
    )

    pause = step_of(body, "pause")
    assert moment(pause["completed_at"]) >= due
    assert moment(pause["outputs"]["waited_until"]) >= due
    assert step_of(body, "after")["sub_state"] == "waiting_for_input"
    completed = [e for e in events(client, name, started["id"]) if e["type"] == "step.completed"]
    assert [(e["step_id"], e["actor"]) for e in completed] == [("pause", "timer")]


def test_a_wait_until_a_time_in_the_past_completes_at_once(client: httpx.Client) -> None:
    name = unique("wait-past")
    steps = [wait_step("pause", until_time="${inputs.at}")]
    register(client, process(name, steps, inputs=[{"name": "at", "type": "string"}]))

    body = start(client, name, {"at": "2020-01-01T00:00:00Z"})

    assert body["state"] == "completed"
    assert step_of(body, "pause")["state"] == "completed"


def test_a_wait_until_a_time_in_the_future_waits_for_it(client: httpx.Client) -> None:
    name = unique("wait-until")
    steps = [wait_step("pause", until_time="${inputs.at}")]
    register(client, process(name, steps, inputs=[{"name": "at", "type": "string"}]))
    at = datetime.now(UTC) + timedelta(seconds=1)

    started = start(client, name, {"at": at.isoformat().replace("+00:00", "Z")})
    body = settle(client, name, started["id"])

    assert started["state"] == "running"
    assert moment(step_of(started, "pause")["due_at"]) == at.replace(
        microsecond=at.microsecond // 1000 * 1000
    )
    assert body["state"] == "completed"
    assert moment(step_of(body, "pause")["completed_at"]) >= at


def test_a_wait_until_a_time_that_is_not_a_time_fails_the_step(client: httpx.Client) -> None:
    name = unique("wait-bad")
    steps = [wait_step("pause", until_time="${inputs.at}")]
    register(client, process(name, steps, inputs=[{"name": "at", "type": "string"}]))

    body = start(client, name, {"at": "next tuesday"})

    assert body["state"] == "failed"
    assert body["error"]["code"] == "invalid_wait_time"


def test_a_wait_until_a_true_condition_completes_at_once(client: httpx.Client) -> None:
    name = unique("wait-cond")
    steps = [wait_step("pause", until="inputs.ready == true"), form("after")]
    register(client, process(name, steps, inputs=[{"name": "ready", "type": "boolean"}]))

    body = start(client, name, {"ready": True})

    assert step_of(body, "pause")["state"] == "completed"
    assert step_of(body, "after")["state"] == "active"


def test_a_wait_on_a_false_condition_ends_at_its_timeout(client: httpx.Client) -> None:
    name = unique("wait-cond")
    steps = [
        wait_step("pause", until="inputs.ready == true") | {"timeout": "1s", "on_timeout": "skip"},
        form("after"),
    ]
    register(client, process(name, steps, inputs=[{"name": "ready", "type": "boolean"}]))

    started = start(client, name, {"ready": False})
    body = settle(
        client, name, started["id"], until=lambda b: step_of(b, "pause")["state"] != "active"
    )

    assert step_of(started, "pause")["sub_state"] == "waiting_for_timer"
    assert step_of(body, "pause")["state"] == "skipped"
    assert step_of(body, "after")["state"] == "active"


def timed_out(body: dict[str, Any]) -> bool:
    """The form has been dealt with by its timeout (whatever the policy made of it)."""
    ask = step_of(body, "ask")
    return ask["state"] != "active" or ask["sub_state"] != "waiting_for_input"


def timeout_process(client: httpx.Client, on_timeout: str | None) -> str:
    name = unique(f"timeout-{on_timeout or 'default'}")
    extra = {"timeout": "1s"} | ({"on_timeout": on_timeout} if on_timeout else {})
    register(client, process(name, [form("ask", **extra), form("after")]))
    return name


@pytest.mark.parametrize("on_timeout", ["fail", None])
def test_a_timeout_that_fails_fails_the_instance(
    client: httpx.Client, on_timeout: str | None
) -> None:
    name = timeout_process(client, on_timeout)
    instance_id = start(client, name)["id"]

    body = settle(client, name, instance_id)

    assert body["state"] == "failed"
    assert body["error"]["code"] == "timeout"
    assert body["error"]["step_id"] == "ask"
    assert step_of(body, "ask")["state"] == "failed"
    assert step_of(body, "after")["state"] == "pending"
    kinds = event_types(client, name, instance_id)
    assert kinds[-3:] == ["step.timed_out", "step.failed", "instance.failed"]


def test_a_timeout_that_skips_moves_on_to_the_next_step(client: httpx.Client) -> None:
    name = timeout_process(client, "skip")
    instance_id = start(client, name)["id"]

    body = settle(client, name, instance_id, until=timed_out)

    assert body["state"] == "running"
    assert step_of(body, "ask")["state"] == "skipped"
    assert step_of(body, "after")["sub_state"] == "waiting_for_input"
    assert "step.timed_out" in event_types(client, name, instance_id)


def test_a_timeout_that_escalates_waits_for_a_person(client: httpx.Client) -> None:
    name = timeout_process(client, "escalate")
    instance_id = start(client, name)["id"]

    body = settle(client, name, instance_id, until=timed_out)

    ask = step_of(body, "ask")
    assert (ask["state"], ask["sub_state"]) == ("active", "escalated")
    assert "step.escalated" in event_types(client, name, instance_id)
    done = submit(client, name, instance_id, "ask", {"note": "handled by a person"})
    assert done.status_code == 200, done.text
    assert step_of(instance(client, name, instance_id), "after")["state"] == "active"


def test_a_timeout_that_notifies_keeps_waiting(client: httpx.Client) -> None:
    name = timeout_process(client, "notify-and-wait")
    instance_id = start(client, name)["id"]

    found = settle_events(client, name, instance_id, "step.timeout_notified")

    [notified] = [e for e in found if e["type"] == "step.timeout_notified"]
    assert notified["step_id"] == "ask"
    assert notified["data"] == {"timeout": "1s", "on_timeout": "notify-and-wait"}
    ask = step_of(instance(client, name, instance_id), "ask")
    assert (ask["state"], ask["sub_state"]) == ("active", "waiting_for_input")
    done = submit(client, name, instance_id, "ask", {"note": "late but done"})
    assert done.status_code == 200, done.text


def settle_events(
    client: httpx.Client, name: str, instance_id: str, kind: str
) -> list[dict[str, Any]]:
    return poll(
        lambda: events(client, name, instance_id),
        lambda found: any(e["type"] == kind for e in found),
        what=f"a {kind} event on {instance_id}",
    )


def test_a_timeout_of_a_step_submitted_in_time_changes_nothing(client: httpx.Client) -> None:
    name = timeout_process(client, "fail")
    on_time = start(client, name)["id"]
    assert submit(client, name, on_time, "ask", {"note": "in time"}).status_code == 200
    # Started after, so its timeout is due after the stale one: once it fired, so had that.
    control = start(client, name)["id"]

    assert settle(client, name, control)["state"] == "failed"

    body = instance(client, name, on_time)
    assert body["state"] == "running"
    assert step_of(body, "ask")["state"] == "completed"
    assert step_of(body, "after")["sub_state"] == "waiting_for_input"
    assert "step.timed_out" not in event_types(client, name, on_time)


def test_sla_events_come_for_a_running_instance_and_not_for_a_finished_one(
    client: httpx.Client,
) -> None:
    name = unique("sla")
    register(client, process(name, [form("ask")], sla={"warning": "1s", "target": "2s"}))
    finished = start(client, name)["id"]
    assert submit(client, name, finished, "ask", {"note": "quick"}).status_code == 200
    waiting = start(client, name)["id"]

    found = settle_events(client, name, waiting, "instance.sla_breached")

    slas = [(e["type"], e["data"]) for e in found if e["type"].startswith("instance.sla")]
    assert slas == [
        ("instance.sla_warning", {"level": "warning", "sla": "1s"}),
        ("instance.sla_breached", {"level": "target", "sla": "2s"}),
    ]
    assert instance(client, name, waiting)["state"] == "running"
    assert not any(kind.startswith("instance.sla") for kind in event_types(client, name, finished))


def test_a_timer_of_a_cancelled_instance_changes_nothing(client: httpx.Client) -> None:
    name = unique("wait-cancel")
    register(client, process(name, [wait_step("pause", seconds=1), form("after")]))
    cancelled = start(client, name)["id"]
    response = client.post(f"/sop/{name}/{cancelled}/cancel", json={"reason": "changed plans"})
    assert response.status_code == 200, response.text
    # Started after, so its timer is due after the stale one: once it fired, so had that.
    control = start(client, name)["id"]

    settle(client, name, control, until=lambda b: step_of(b, "pause")["state"] == "completed")

    body = instance(client, name, cancelled)
    assert body["state"] == "cancelled"
    assert step_of(body, "pause")["state"] == "skipped"
    assert "step.completed" not in event_types(client, name, cancelled)
