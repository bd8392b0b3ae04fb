"""The public reference process files: the ones this server can run start and wait; the
others are refused at registration with a message naming each step it cannot run.

The files are read from ``../shared/reference-processes`` (never copied into the repo).
When a feature lands, move the files it unlocks from REFUSED to RUNNABLE. Their scripts
are not published with them: a file whose only blockers are scripts runs once stand-in
scripts sit next to it (``opensop serve --load DIR``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.api import assert_error, start, step_states
from tests.support.background import settle, write_script
from tests.support.reference import REFERENCE_DIR
from tests.support.server import running_server

# file -> (inputs to start it with, its first step and what that step waits for)
RUNNABLE: dict[str, tuple[dict[str, Any], str, str]] = {
    # Three automated steps without `run:`: each waits for an external worker.
    "appsignal-responder.sop.yaml": (
        {"projects": ["myapp", "backend"], "phase": "1", "run_id": "run-1"},
        "fetch-incidents",
        "waiting_for_worker",
    ),
}

# Why a step is refused (words its message must contain). Uploaded over HTTP to a server
# without OPENSOP_PROCESS_DIR, a step with `run:` has no folder to find its script in.
SCRIPT = "need a process directory"
NOTIFICATION = "notification steps are not delivered"
WEBHOOK = "webhook steps are not executed"
LLM = "llm steps need a model provider"
LOOP = "loop steps are not executed"
SUBPROCESS = "subprocess steps are not executed"

# file -> every refused step: (detail path, step id, reason). Waits, on_timeout, schedule
# triggers and scripts are run now; these files still use something that is not.
REFUSED: dict[str, list[tuple[str, str, str]]] = {
    "agent-pr-review.sop.yaml": [
        ("process.steps[2].run", "post-comment", SCRIPT),
        ("process.steps[3].type", "notify-author", NOTIFICATION),
    ],
    "customer-onboarding.sop.yaml": [
        ("process.steps[1].run", "verify-documents", SCRIPT),
        ("process.steps[3].type", "submit-to-compliance", WEBHOOK),
        ("process.steps[4].run", "create-account", SCRIPT),
        ("process.steps[5].type", "send-welcome", NOTIFICATION),
    ],
    # Its form and approval timeouts are enforced now; only the notification is missing.
    "expense-approval.sop.yaml": [
        ("process.steps[3].type", "notify-requester", NOTIFICATION),
    ],
    "lead-qualification.sop.yaml": [
        ("process.steps[1].run", "score-lead", SCRIPT),
        ("process.steps[2].type", "notify-team", NOTIFICATION),
    ],
    # Its wait timers and on_timeout run now; the scripts and the Slack webhook do not.
    "maria-linkedin-post-approval.sop.yaml": [
        ("process.steps[0].run", "validate-payload", SCRIPT),
        ("process.steps[1].type", "request-slack-approval", WEBHOOK),
        ("process.steps[4].run", "capture-published-url", SCRIPT),
        ("process.steps[5].run", "log-to-gbrain", SCRIPT),
        ("process.steps[10].run", "mark-complete", SCRIPT),
    ],
    # Its schedule trigger is run now; the scripts, the llm step and the notification not.
    "morning-briefing.sop.yaml": [
        ("process.steps[0].run", "fetch-slack", SCRIPT),
        ("process.steps[1].run", "fetch-gmail", SCRIPT),
        ("process.steps[2].run", "fetch-calendar", SCRIPT),
        ("process.steps[3].type", "synthesize", LLM),
        ("process.steps[4].type", "deliver", NOTIFICATION),
    ],
    "release-deploy.sop.yaml": [
        ("process.steps[1].run", "stamp-release", SCRIPT),
        ("process.steps[3].type", "trigger-deploy", WEBHOOK),
        ("process.steps[4].type", "announce-release", NOTIFICATION),
    ],
    "subprocess-demo.sop.yaml": [
        ("process.steps[0].run", "prepare-inputs", SCRIPT),
        ("process.steps[1].type", "run-lead-qualification", SUBPROCESS),
    ],
    "support-ticket-triage.sop.yaml": [
        ("process.steps[1].run", "categorize", SCRIPT),
        ("process.steps[3].type", "notify-assignee", NOTIFICATION),
    ],
    # Only scripts: with them in its folder it runs (see the test at the end).
    "v02-smoke-exit-when.sop.yaml": [
        ("process.steps[0].run", "gate", SCRIPT),
        ("process.steps[1].run", "enrich", SCRIPT),
        ("process.steps[2].run", "finalize", SCRIPT),
    ],
    "v02-smoke-loop-llm.sop.yaml": [
        ("process.steps[0].run", "source", SCRIPT),
        ("process.steps[1].type", "classify-each", LOOP),
    ],
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

    expected = REFUSED[file]
    assert [item["path"] for item in body["details"]] == [path for path, _, _ in expected]
    for item, (_, step_id, reason) in zip(body["details"], expected, strict=True):
        assert item["code"] == "unsupported_step_type", item
        assert item["message"].startswith(f"{step_id}: "), item
        assert reason in item["message"], item
    first = body["details"][0]["message"]
    assert body["message"] == f"The process definition is invalid: {first}"


# A stand-in for steps/v02_echo_score.rb: any executable with a #! line runs.
ECHO_SCORE = """#!/usr/bin/env python3
import json, os, sys
score = json.load(sys.stdin)["score"]
stage = os.environ["OPENSOP_STEP_ID"]
print(json.dumps({"score": score, "outcome": "accepted", "stage_reached": stage}))
"""


@pytest.mark.parametrize(
    ("score", "outputs", "states"),
    [
        (
            0.2,
            {"outcome": "rejected_low_score", "stage_reached": "gate"},
            ["completed", "skipped", "skipped"],
        ),
        (
            0.9,
            {"outcome": "accepted", "stage_reached": "finalize"},
            ["completed", "completed", "completed"],
        ),
    ],
    ids=["exits-at-the-gate", "runs-every-script"],
)
def test_the_exit_when_smoke_process_runs_with_its_scripts_in_place(
    tmp_path: Path, score: float, outputs: dict[str, str], states: list[str]
) -> None:
    folder = tmp_path / "processes"
    folder.mkdir()
    file = "v02-smoke-exit-when.sop.yaml"
    (folder / file).write_bytes(read(file))
    write_script(folder, "steps/v02_echo_score.rb", ECHO_SCORE, executable=True)

    with (
        running_server(f"sqlite:///{tmp_path / 'opensop.db'}", load=[folder]) as server,
        server.client() as client,
    ):
        started = start(client, "v02-smoke-exit-when", {"score": score})
        body = settle(client, "v02-smoke-exit-when", started["id"])

    assert body["state"] == "completed", body
    assert body["outputs"] == outputs
    assert [step["state"] for step in body["steps"]] == states
