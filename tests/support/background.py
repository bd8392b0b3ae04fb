"""Helpers for tests of background work: scripts on disk, steps, and waiting for the
engine to get somewhere (with a generous deadline, never a speed assertion)::

    folder = script_folder(root, "retry")
    write_script(folder, "flaky.py", FLAKY)
    register(client, process(name, [automated("flaky", f"{folder.name}/flaky.py")]))
    body = settle(client, name, start(client, name)["id"])
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.support.api import instance

T = TypeVar("T")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
# How long a test waits for the engine before it calls the behaviour broken: far above
# what any of these short scripts and timers need, so a slow machine never fails them.
DEADLINE_SECONDS = 30.0


def poll(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = DEADLINE_SECONDS,
    interval: float = 0.05,
) -> T:
    """Call ``fetch`` until ``done`` says yes; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}; last: {value}")
        time.sleep(interval)
        value = fetch()
    return value


def settle(
    client: httpx.Client,
    name: str,
    instance_id: str,
    *,
    until: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = DEADLINE_SECONDS,
) -> dict[str, Any]:
    """The instance once ``until`` holds (default: it is completed, failed or cancelled)."""

    def finished(body: dict[str, Any]) -> bool:
        return body["state"] in TERMINAL

    return poll(
        lambda: instance(client, name, instance_id),
        until or finished,
        what=f"instance {instance_id} of {name}",
        timeout=timeout,
    )


def step_of(body: dict[str, Any], step_id: str) -> dict[str, Any]:
    """One step of an instance body."""
    [step] = [step for step in body["steps"] if step["id"] == step_id]
    return step


def events(client: httpx.Client, name: str, instance_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/sop/{name}/{instance_id}/events")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def event_types(client: httpx.Client, name: str, instance_id: str) -> list[str]:
    return [event["type"] for event in events(client, name, instance_id)]


def completions(found: list[dict[str, Any]]) -> Counter[str]:
    """How many ``step.completed`` events each step has."""
    return Counter(e["step_id"] for e in found if e["type"] == "step.completed")


def script_folder(root: Path, label: str) -> Path:
    """A new folder under ``root`` for one test's scripts (``run:`` paths start with it)."""
    folder = root / f"{label}-{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True)
    return folder


def write_script(folder: Path, name: str, text: str, *, executable: bool = False) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


def automated(step_id: str, run: str | None = None, **extra: Any) -> dict[str, Any]:
    """An automated step: with ``run`` the engine runs the script, else a worker does it."""
    step: dict[str, Any] = {"id": step_id, "type": "automated", **extra}
    if run is not None:
        step["run"] = run
    return step


def wait_step(step_id: str, **wait: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "wait", "wait": wait}


def moment(text: str) -> datetime:
    """An API timestamp (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
