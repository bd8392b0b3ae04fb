"""Automated steps with `run:` scripts, run by the server's job runner: outputs, output
validation, retries with backoff, timeouts that leave no process behind, a clean
environment, and the fix-and-retry path for a failed step.

Most tests share ``script_server`` (scripts under ``script_root``); the first one loads a
folder with ``--load`` as an operator would. Every script here reads its stdin before it
exits: one that exits at once without reading trips a known bug (see the xfail at the end)
that would make these tests flaky rather than wrong.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from tests.support.api import assert_error, instance, process, register, start, submit, unique
from tests.support.background import (
    alive,
    automated,
    events,
    moment,
    poll,
    script_folder,
    settle,
    step_of,
    write_script,
)
from tests.support.server import Server, running_server, running_worker

from opensop.runtime.scripts import ScriptRequest, run_script

THREE_STEPS = """\
opensop: "0.1"
process:
  name: greet-three-ways
  version: "1.0"
  inputs:
    - {name: who, type: string, required: true}
  outputs:
    - {name: summary, type: string, from: steps.summarize.outputs.summary}
  steps:
    - id: greet
      type: automated
      run: steps/greet.py
      inputs: {who: "${inputs.who}"}
      outputs:
        - {name: greeting, type: string, required: true}
    - id: shout
      type: automated
      run: steps/shout.sh
      inputs: {greeting: "${steps.greet.outputs.greeting}"}
      outputs:
        - {name: shouted, type: string, required: true}
    - id: summarize
      type: automated
      run: steps/summarize.py
      inputs:
        greeting: "${steps.greet.outputs.greeting}"
        shouted: "${steps.shout.outputs.shouted}"
      outputs:
        - {name: summary, type: string, required: true}
"""

GREET = """\
import json, sys
who = json.load(sys.stdin)["who"]
print(json.dumps({"greeting": f"Hello, {who}"}))
"""

# Reads the JSON on stdin with nothing but the shell, and upper-cases the greeting.
SHOUT = """\
payload=$(cat)
greeting=$(printf '%s' "$payload" | sed -e 's/.*"greeting": *"\\([^"]*\\)".*/\\1/')
printf '{"shouted": "%s!"}\\n' "$(printf '%s' "$greeting" | tr '[:lower:]' '[:upper:]')"
"""

SUMMARIZE = """\
import json, os
inputs = json.loads(os.environ["OPENSOP_CONTEXT"])
print(json.dumps({"summary": inputs["greeting"] + " / " + inputs["shouted"]}))
"""


def test_a_loaded_process_runs_python_and_shell_scripts_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "processes"
    write_script(folder, "greet.sop.yaml", THREE_STEPS)
    write_script(folder, "steps/greet.py", GREET)
    write_script(folder, "steps/shout.sh", SHOUT)
    write_script(folder, "steps/summarize.py", SUMMARIZE)

    with (
        running_server(f"sqlite:///{tmp_path / 'opensop.db'}", load=[folder]) as server,
        server.client() as client,
    ):
        started = start(client, "greet-three-ways", {"who": "Ada"})
        body = settle(client, "greet-three-ways", started["id"])

    assert started["state"] == "running"
    assert step_of(started, "greet")["sub_state"] == "running"
    assert body["state"] == "completed", body
    assert body["outputs"] == {"summary": "Hello, Ada / HELLO, ADA!"}
    assert [step["state"] for step in body["steps"]] == ["completed"] * 3
    assert step_of(body, "shout")["outputs"] == {"shouted": "HELLO, ADA!"}
    assert all(step["decided_by"] == "engine:script" for step in body["steps"])


def script_process(
    client: httpx.Client, root: Path, label: str, script: str, file: str = "run.py", **step: Any
) -> tuple[str, Path]:
    """Register a process whose one step ``work`` runs ``script``; its name and folder."""
    folder = script_folder(root, label)
    write_script(folder, file, script)
    name = unique(label)
    register(client, process(name, [automated("work", f"{folder.name}/{file}", **step)]))
    return name, folder


EXTRA_OUTPUT = """\
import json, sys
json.load(sys.stdin)
print(json.dumps({"score": 7, "surprise": True}))
"""

WRONG_TYPE = """\
import json, sys
json.load(sys.stdin)
print(json.dumps({"score": "high"}))
"""


@pytest.mark.parametrize(
    ("validation", "script", "state"),
    [
        ("strict", EXTRA_OUTPUT, "failed"),
        ("lenient", EXTRA_OUTPUT, "completed"),
        ("lenient", WRONG_TYPE, "failed"),
    ],
    ids=["strict-refuses-unknown", "lenient-keeps-unknown", "lenient-checks-declared"],
)
def test_outputs_are_validated_against_the_declaration(
    script_client: httpx.Client, script_root: Path, validation: str, script: str, state: str
) -> None:
    declared = [{"name": "score", "type": "integer", "required": True}]
    name, _ = script_process(
        script_client, script_root, "validate", script, outputs=declared, validation=validation
    )

    body = settle(script_client, name, start(script_client, name)["id"])

    step = step_of(body, "work")
    assert (body["state"], step["state"]) == (state, state), body
    if state == "completed":
        assert step["outputs"] == {"score": 7, "surprise": True}
    else:
        assert body["error"]["code"] == step["error"]["code"] == "invalid_outputs"
        assert ("surprise" if script is EXTRA_OUTPUT else "score") in step["error"]["message"]


ALWAYS_FAILS = """\
cat > /dev/null
echo "$OPENSOP_ATTEMPT" >> attempts.log
echo "attempt $OPENSOP_ATTEMPT: the upstream said no" >&2
exit 3
"""


def test_a_failing_script_is_retried_with_backoff_then_fails_the_instance(
    script_client: httpx.Client, script_root: Path
) -> None:
    retry = {"max": 2, "backoff": "fixed", "initial": "0.2s"}
    name, folder = script_process(
        script_client, script_root, "no", ALWAYS_FAILS, "run.sh", retry=retry
    )

    instance_id = start(script_client, name)["id"]
    body = settle(script_client, name, instance_id)

    step = step_of(body, "work")
    assert body["state"] == "failed"
    assert body["error"] == {"step_id": "work", "code": "exit_status", "message": step_message(3)}
    assert (step["state"], step["attempt"], step["error"]["code"]) == ("failed", 3, "exit_status")
    assert step["stderr"] == "attempt 3: the upstream said no\n"
    assert (folder / "attempts.log").read_text().split() == ["1", "2", "3"]
    found = events(script_client, name, instance_id)
    retries = [e for e in found if e["type"] == "step.retry_scheduled"]
    assert [(e["data"]["attempt"], e["data"]["next_attempt"]) for e in retries] == [(1, 2), (2, 3)]
    for event in retries:
        assert event["step_id"] == "work"
        assert event["data"]["code"] == "exit_status"
        assert event["data"]["exit_status"] == 3
        assert event["data"]["delay_seconds"] == pytest.approx(0.2)
    # Attempt 3 ran no earlier than its backoff after attempt 2 failed.
    failed = next(e for e in found if e["type"] == "step.failed")
    assert (moment(failed["created_at"]) - moment(retries[1]["created_at"])).total_seconds() >= 0.2
    assert [e["type"] for e in found][-2:] == ["step.failed", "instance.failed"]


def step_message(status: int) -> str:
    return f"exited with status {status}"


FAILS_TWICE = """\
import json, os, sys
json.load(sys.stdin)
attempt = int(os.environ["OPENSOP_ATTEMPT"])
if attempt < 3:
    sys.exit(f"attempt {attempt} failed")
print(json.dumps({"attempt": attempt}))
"""


def test_a_script_that_fails_twice_completes_on_its_third_attempt(
    script_client: httpx.Client, script_root: Path
) -> None:
    retry = {"max": 2, "backoff": "exponential", "initial": "0.2s"}
    name, _ = script_process(script_client, script_root, "flaky", FAILS_TWICE, retry=retry)

    instance_id = start(script_client, name)["id"]
    body = settle(script_client, name, instance_id)

    step = step_of(body, "work")
    assert body["state"] == "completed", body
    assert (step["state"], step["attempt"], step["outputs"]) == ("completed", 3, {"attempt": 3})
    assert step["error"] is None
    retries = [
        e["data"]["delay_seconds"]
        for e in events(script_client, name, instance_id)
        if e["type"] == "step.retry_scheduled"
    ]
    assert retries == [pytest.approx(0.2), pytest.approx(0.4)]


SPAWNS_AND_HANGS = """\
import os, pathlib, subprocess, time
here = pathlib.Path(__file__).parent
child = subprocess.Popen(["sh", "-c", "sleep 120 & echo $! > grandchild.pid; wait"], cwd=here)
(here / "child.pid").write_text(str(child.pid))
(here / "script.pid").write_text(str(os.getpid()))
time.sleep(120)
"""


def test_a_script_past_its_timeout_is_stopped_with_everything_it_started(
    script_client: httpx.Client, script_root: Path
) -> None:
    name, folder = script_process(
        script_client, script_root, "hangs", SPAWNS_AND_HANGS, timeout="1s"
    )

    body = settle(script_client, name, start(script_client, name)["id"])

    step = step_of(body, "work")
    assert body["state"] == "failed"
    assert body["error"]["code"] == step["error"]["code"] == "timeout"
    pids = {f: int((folder / f).read_text()) for f in ("script.pid", "child.pid", "grandchild.pid")}
    survivors = poll(
        lambda: {f: pid for f, pid in pids.items() if alive(pid)},
        lambda left: not left,
        what="the script's processes to be gone",
        timeout=5,
    )
    assert survivors == {}


PRINTS_ENVIRONMENT = """\
import json, os, sys
json.load(sys.stdin)
print(json.dumps({"environment": dict(os.environ)}))
"""


def test_a_script_never_sees_the_engine_secrets(
    script_server: Server, script_client: httpx.Client, script_root: Path
) -> None:
    name, _ = script_process(script_client, script_root, "env", PRINTS_ENVIRONMENT)

    body = settle(script_client, name, start(script_client, name)["id"])

    assert body["state"] == "completed", body
    environment: dict[str, str] = step_of(body, "work")["outputs"]["environment"]
    assert "OPENSOP_API_TOKEN" not in environment
    assert "OPENSOP_DATABASE_URL" not in environment
    assert "OPENSOP_PROCESS_DIR" not in environment
    database_file = script_server.database_url.removeprefix("sqlite:///")
    assert script_server.token
    for value in environment.values():
        assert script_server.token not in value
        assert database_file not in value
    assert environment["OPENSOP_STEP_ID"] == "work"
    assert environment["OPENSOP_ATTEMPT"] == "1"


FAILS_UNTIL_FIXED = """\
import json, pathlib, sys
json.load(sys.stdin)
if not (pathlib.Path(__file__).parent / "fixed.flag").exists():
    sys.exit("the fix is not deployed yet")
print(json.dumps({"fixed": True}))
"""


def test_retrying_the_failed_step_after_a_fix_completes_the_instance(
    script_client: httpx.Client, script_root: Path
) -> None:
    name, folder = script_process(script_client, script_root, "fixme", FAILS_UNTIL_FIXED)
    instance_id = start(script_client, name)["id"]
    failed = settle(script_client, name, instance_id)
    assert failed["state"] == "failed"
    assert step_of(failed, "work")["stderr"] == "the fix is not deployed yet\n"
    (folder / "fixed.flag").touch()

    retried = script_client.post(f"/sop/{name}/{instance_id}/steps/work/retry")

    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "running"
    assert retried.json()["error"] is None
    assert step_of(retried.json(), "work")["attempt"] == 2
    body = settle(script_client, name, instance_id)
    assert body["state"] == "completed", body
    assert step_of(body, "work")["outputs"] == {"fixed": True}
    assert body["completed_at"] is not None
    [event] = [e for e in events(script_client, name, instance_id) if e["type"] == "step.retried"]
    assert event["data"]["attempt"] == 2
    assert event["data"]["previous"]["code"] == "exit_status"


def test_only_the_failed_step_of_a_failed_instance_can_be_retried(
    script_client: httpx.Client, script_root: Path
) -> None:
    name, _ = script_process(script_client, script_root, "done", PRINTS_ENVIRONMENT)
    instance_id = start(script_client, name)["id"]
    assert settle(script_client, name, instance_id)["state"] == "completed"
    waiting = unique("waiting")
    register(script_client, process(waiting, [{"id": "fill", "type": "form", "outputs": []}]))
    running_id = start(script_client, waiting)["id"]

    def retry(process_name: str, iid: str, step_id: str) -> httpx.Response:
        return script_client.post(f"/sop/{process_name}/{iid}/steps/{step_id}/retry")

    assert_error(retry(name, instance_id, "work"), 422, "invalid_transition")
    assert_error(retry(waiting, running_id, "fill"), 422, "invalid_transition")
    assert_error(retry(name, instance_id, "nowhere"), 404, "not_found")
    assert_error(retry(waiting, instance_id, "work"), 404, "not_found")


def test_a_step_that_failed_without_failing_the_instance_cannot_be_retried(
    script_client: httpx.Client, script_root: Path
) -> None:
    folder = script_folder(script_root, "tolerated")
    write_script(folder, "run.py", "import sys\nsys.stdin.read()\nsys.exit(1)\n")
    name = unique("tolerated")
    steps = [
        automated("work", f"{folder.name}/run.py", continue_on_error=True),
        {"id": "fill", "type": "form", "outputs": []},
    ]
    register(script_client, process(name, steps))
    instance_id = start(script_client, name)["id"]
    body = settle(
        script_client, name, instance_id, until=lambda b: step_of(b, "work")["state"] == "failed"
    )
    assert body["state"] == "running"

    response = script_client.post(f"/sop/{name}/{instance_id}/steps/work/retry")

    assert_error(response, 422, "invalid_transition")


def test_a_script_that_exits_without_reading_stdin_is_an_outcome_under_uvloop(
    tmp_path: Path,
) -> None:
    write_script(tmp_path, "quick.sh", "exit 3\n")

    async def attempt(number: int) -> str:
        request = ScriptRequest(
            process_dir=tmp_path,
            run="quick.sh",
            inputs={"n": number},
            instance_id="01INSTANCE",
            step_id="quick",
            attempt=1,
            idempotency_key=f"key-{number}",
            timeout_seconds=10,
        )
        try:
            return str((await run_script(request)).error_code)
        except RuntimeError as error:
            return f"raised {error}"

    async def busy_loop() -> str:
        # Other work on the loop, as in a server: the scripts exit before their turn.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.002)
            await asyncio.sleep(0)
        return "exit_status"

    async def main() -> list[str]:
        return list(await asyncio.gather(busy_loop(), *(attempt(n) for n in range(10))))

    assert set(uvloop.run(main())) == {"exit_status"}


SLOW_THEN_PRINTS = """\
import json, pathlib, sys, time
json.load(sys.stdin)
(pathlib.Path(__file__).parent / "started").touch()
time.sleep(1)
print(json.dumps({"late": True}))
(pathlib.Path(__file__).parent / "finished").touch()
"""


def test_the_result_of_a_script_whose_instance_was_cancelled_is_ignored(
    script_client: httpx.Client, script_root: Path
) -> None:
    name, folder = script_process(script_client, script_root, "cancel", SLOW_THEN_PRINTS)
    instance_id = start(script_client, name)["id"]
    assert_error(
        submit(script_client, name, instance_id, "work", {"late": False}),
        422,
        "invalid_transition",
    )
    # Cancel while the script runs (a job not yet claimed would never start at all).
    poll(lambda: (folder / "started").exists(), bool, what="the script to start", timeout=10)

    cancelled = script_client.post(f"/sop/{name}/{instance_id}/cancel", json={"reason": "no"})
    assert cancelled.status_code == 200, cancelled.text
    poll(lambda: (folder / "finished").exists(), bool, what="the script to finish", timeout=10)
    time.sleep(0.5)  # its outcome reaches the store just after

    body = instance(script_client, name, instance_id)
    assert body["state"] == "cancelled"
    assert (step_of(body, "work")["state"], step_of(body, "work")["outputs"]) == ("skipped", None)
    assert "step.completed" not in [e["type"] for e in events(script_client, name, instance_id)]


def test_a_script_deleted_after_registration_fails_its_step(
    script_client: httpx.Client, script_root: Path
) -> None:
    name, folder = script_process(script_client, script_root, "gone", PRINTS_ENVIRONMENT)
    (folder / "run.py").unlink()

    body = settle(script_client, name, start(script_client, name)["id"])

    assert body["state"] == "failed"
    assert body["error"]["code"] == "script_not_found"


@pytest.mark.parametrize(
    ("run", "words"),
    [
        ("../outside.py", "leaves the process directory"),
        ("/usr/bin/env", "is absolute"),
        ("nowhere/missing.py", "no script file"),
    ],
)
def test_a_script_that_cannot_run_is_refused_at_registration(
    script_client: httpx.Client, run: str, words: str
) -> None:
    name = unique("refused")
    document = process(name, [automated("work", run)])

    body = assert_error(
        script_client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    [item] = body["details"]
    assert item["path"] == "process.steps[0].run"
    assert words in item["message"]


def test_a_server_without_workers_leaves_scripts_to_an_opensop_worker(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    write_script(folder, "run.py", PRINTS_ENVIRONMENT)
    url = f"sqlite:///{tmp_path / 'opensop.db'}"
    env = {"OPENSOP_PROCESS_DIR": str(folder)}

    with (
        running_server(url, env=env, args=["--workers", "0"]) as server,
        server.client() as client,
    ):
        name = unique("offloaded")
        register(client, process(name, [automated("work", "run.py")]))
        instance_id = start(client, name)["id"]
        time.sleep(1.5)  # more than a runner's idle poll: nobody here runs jobs
        waiting = instance(client, name, instance_id)
        with running_worker(url, env={"OPENSOP_API_TOKEN": "sk_never_shown"}):
            body = settle(client, name, instance_id)

    assert step_of(waiting, "work")["sub_state"] == "running"
    assert body["state"] == "completed", body
    environment = step_of(body, "work")["outputs"]["environment"]
    assert "sk_never_shown" not in json.dumps(environment)


def test_a_script_symlinked_out_of_the_folder_is_refused_at_registration(
    script_client: httpx.Client, script_root: Path, tmp_path: Path
) -> None:
    folder = script_folder(script_root, "escape")
    outside = write_script(tmp_path, "outside.py", PRINTS_ENVIRONMENT)
    (folder / "run.py").symlink_to(outside)
    document = process(unique("escape"), [automated("work", f"{folder.name}/run.py")])

    body = assert_error(
        script_client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    assert "leads outside the process folder" in body["details"][0]["message"]
