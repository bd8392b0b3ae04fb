"""Small helpers for talking to the API in tests: unique processes, calls, error checks."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
UTC_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
ERROR_KEYS = {"error", "message", "details", "request_id"}


def unique(prefix: str) -> str:
    """A process name no other test uses (names match ^[a-z0-9][a-z0-9_-]*$)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def process(
    name: str,
    steps: list[dict[str, Any]],
    *,
    version: str = "1.0",
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A process document (sent as JSON to the register endpoint)."""
    body: dict[str, Any] = {"name": name, "version": version, "steps": steps, **extra}
    if inputs is not None:
        body["inputs"] = inputs
    if outputs is not None:
        body["outputs"] = outputs
    return {"opensop": "0.1", "process": body}


def form(step_id: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A form step; ``fields`` are its declared outputs (default: one required string)."""
    outputs = list(fields) or [{"name": "note", "type": "string", "required": True}]
    return {"id": step_id, "type": "form", "outputs": outputs, **extra}


def one_form_process(name: str, **extra: Any) -> dict[str, Any]:
    """The smallest useful process: a form step waiting for ``{"note": "..."}``."""
    return process(name, [form("fill")], **extra)


def register(client: httpx.Client, document: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/sop/processes/register", json=document)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def start(
    client: httpx.Client, name: str, inputs: dict[str, Any] | None = None, **headers: str
) -> dict[str, Any]:
    response = client.post(f"/sop/{name}/start", json={"inputs": inputs or {}}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def submit(
    client: httpx.Client,
    name: str,
    instance_id: str,
    step_id: str,
    outputs: dict[str, Any],
    **extra: Any,
) -> httpx.Response:
    return client.post(
        f"/sop/{name}/{instance_id}/steps/{step_id}/submit", json={"outputs": outputs, **extra}
    )


def submitted(
    client: httpx.Client,
    name: str,
    instance_id: str,
    step_id: str,
    outputs: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    response = submit(client, name, instance_id, step_id, outputs, **extra)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def instance(client: httpx.Client, name: str, instance_id: str) -> dict[str, Any]:
    response = client.get(f"/sop/{name}/{instance_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def step_states(body: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """``{step id: (state, sub_state)}`` of an instance body, in definition order."""
    return {step["id"]: (step["state"], step["sub_state"]) for step in body["steps"]}


def count(client: httpx.Client, **params: str) -> int:
    """How many instances the list endpoint reports (X-Total-Count)."""
    response = client.get("/sop/instances", params={**params, "limit": "1"})
    assert response.status_code == 200, response.text
    return int(response.headers["X-Total-Count"])


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the error envelope (and ``code`` when given)."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text[:500]}"
    )
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body, dict), body
    assert set(body) <= ERROR_KEYS, body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    if "details" in body:
        assert isinstance(body["details"], list), body
    if code is not None:
        assert body["error"] == code, body
    return body


def detail_codes(body: dict[str, Any]) -> dict[str, str]:
    """``{field: code}`` of an ``invalid_inputs`` body."""
    return {item["field"]: item["code"] for item in body["details"]}
