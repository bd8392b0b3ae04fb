"""The public reference process files: the ones this server can run start and wait; the
others are refused at registration with a message naming what is missing.

The files are read from ``../shared/reference-processes`` (never copied into the repo).
When a feature lands, move the files it unlocks from REFUSED to RUNNABLE.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from tests.support.api import assert_error, step_states
from tests.support.server import REPO_ROOT

REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference-processes"

# file -> (inputs to start it with, its first step and what that step waits for)
RUNNABLE: dict[str, tuple[dict[str, Any], str, str]] = {
    # Three automated steps without `run:`: each waits for an external worker.
    "appsignal-responder.sop.yaml": (
        {"projects": ["myapp", "backend"], "phase": "1", "run_id": "run-1"},
        "fetch-incidents",
        "waiting_for_worker",
    ),
}

# file -> what it uses that this server does not run yet (the words the 422 must name)
REFUSED: dict[str, list[str]] = {
    # collect-pr-details has on_timeout; post-comment runs a script; notify-author notifies.
    "agent-pr-review.sop.yaml": ["on_timeout", "run:", "notification"],
    # on_timeout, two scripts, a webhook to compliance and a welcome notification.
    "customer-onboarding.sop.yaml": ["on_timeout", "run:", "webhook", "notification"],
    # on_timeout on the form and the approval; a notification to the requester.
    "expense-approval.sop.yaml": ["on_timeout", "notification"],
    # score-lead runs a script; notify-team is a notification.
    "lead-qualification.sop.yaml": ["run:", "notification"],
    # scripts, a Slack webhook with a callback, wait timers and on_timeout.
    "maria-linkedin-post-approval.sop.yaml": ["run:", "webhook", "wait", "on_timeout"],
    # a schedule trigger, three scripts, an llm step and a notification.
    "morning-briefing.sop.yaml": ["schedule", "run:", "llm", "notification"],
    # on_timeout, a script, a deploy webhook and an announcement notification.
    "release-deploy.sop.yaml": ["on_timeout", "run:", "webhook", "notification"],
    # a script, then a subprocess step.
    "subprocess-demo.sop.yaml": ["run:", "subprocess"],
    # on_timeout, a script and a notification.
    "support-ticket-triage.sop.yaml": ["on_timeout", "run:", "notification"],
    # every step runs a script (exit_when itself is supported).
    "v02-smoke-exit-when.sop.yaml": ["run:"],
    # a script and a loop whose body is an llm step.
    "v02-smoke-loop-llm.sop.yaml": ["run:", "loop"],
}


def read(name: str) -> bytes:
    path = REFERENCE_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared folder sits next to the repository)")
    return path.read_bytes()


def upload(client: httpx.Client, name: str) -> httpx.Response:
    return client.post("/sop/processes/register", files={"file": (name, read(name))})


def test_every_reference_file_is_classified() -> None:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"{REFERENCE_DIR} is not here")
    files = {path.name for path in REFERENCE_DIR.glob("*.sop.yaml")}

    assert files == set(RUNNABLE) | set(REFUSED)


@pytest.mark.parametrize("file", sorted(RUNNABLE))
def test_runnable_reference_processes_start_and_wait(client: httpx.Client, file: str) -> None:
    inputs, first_step, waits_for = RUNNABLE[file]

    registered = upload(client, file)

    assert registered.status_code in (200, 201), registered.text  # 200: already registered
    name = registered.json()["name"]
    started = client.post(f"/sop/{name}/start", json={"inputs": inputs})
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["state"] == "running"
    states = step_states(body)
    assert states[first_step] == ("active", waits_for)
    assert all(state == ("pending", None) for step, state in states.items() if step != first_step)


@pytest.mark.parametrize("file", sorted(REFUSED))
def test_reference_processes_with_missing_features_are_refused(
    sqlite_client: httpx.Client, file: str
) -> None:
    body = assert_error(upload(sqlite_client, file), 422, "invalid_definition")

    features = REFUSED[file]
    assert any(feature in body["message"] for feature in features), body["message"]
    explained = json.dumps(body["details"])
    for feature in features:
        assert feature in explained, f"{file}: nothing names {feature!r} in {explained}"
    for item in body["details"]:
        assert item["path"].startswith("process.")
        assert item["message"]
