"""Odd requests never make the server fail: every answer is below 500, every 4xx an envelope.

A seeded random walk (reproducible: the seed is in the test id) over the writing endpoints
with random JSON, odd bytes, odd paths and odd headers.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
from tests.support.api import assert_error, form, process, register, start, unique
from tests.support.server import Server

REQUESTS = 300
# U+0000 and lone surrogates are left to their own tests below (known bugs).
ODD_TEXT = [
    "",
    " ",
    "a",
    "é",
    "💥",
    "\u0001",
    "../..",
    "%2e%2e",
    "x" * 300,
    "true",
    "null",
    "0",
    "-1",
    "1e309",
    "NaN",
    "<script>",
    "'; drop table instances; --",
    "\\",
    "\ufeff",
]
ODD_BYTES = [
    b"",
    b"{",
    b"[",
    b"}",
    b"null",
    b"\xff\xfe\x00",
    b'{"inputs": NaN}',
    b'"text"',
    b"[" * 5000,
    b'{"a":' * 3000,
    b"---\n- yaml",
    b"1e99999",
    b'{"inputs": {"x": 1e99999}}',
    b"\x00" * 64,
]
CONTENT_TYPES = [
    "application/json",
    "application/yaml",
    "text/plain",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/x-www-form-urlencoded",
    "application/json; charset=latin-1",
    "",
    "garbage/;;;",
]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "null", "big"] + (
        ["list", "dict"] * 2 if depth < 4 else []
    )
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice([*ODD_TEXT, "note", "approved", "US", "2024-01-15"])
    if kind == "int":
        return rng.choice([0, 1, -1, 7, 2**31, -(2**63), 10**30])
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e308, 3.14])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "big":
        return "y" * rng.choice([1000, 70000])
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = [
        "inputs",
        "outputs",
        "metadata",
        "reason",
        "decided_by",
        "confidence",
        "note",
        "approved",
        "name",
        "steps",
        "opensop",
        "process",
        "version",
        "lease_token",
        "x",
    ]
    return {
        rng.choice(keys + ODD_TEXT): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))
    }


def random_body(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return json.dumps(random_json(rng)).encode()
    if roll < 0.8:
        return rng.choice(ODD_BYTES)
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))


@pytest.fixture
def target(client: httpx.Client) -> tuple[str, str]:
    name = unique("fuzz")
    register(
        client,
        process(
            name,
            [
                form(
                    "fill",
                    {"name": "note", "type": "string", "required": True},
                    {"name": "n", "type": "integer"},
                ),
                {"id": "approve", "type": "approval"},
            ],
            inputs=[
                {"name": "who", "type": "string"},
                {"name": "n", "type": "number"},
                {"name": "data", "type": "object"},
            ],
        ),
    )
    return name, start(client, name)["id"]


def random_request(rng: random.Random, name: str, instance_id: str) -> tuple[str, str]:
    odd = rng.choice(ODD_TEXT) or "x"
    step = rng.choice(["fill", "approve", "nope", odd])
    some_id = rng.choice([instance_id, instance_id.lower(), "0" * 26, odd])
    some_name = rng.choice([name, name, "customer-onboarding", odd])
    path = rng.choice(
        [
            f"/sop/{some_name}/start",
            f"/sop/{some_name}/{some_id}/steps/{step}/submit",
            f"/sop/{some_name}/{some_id}/cancel",
            "/sop/processes/register",
            f"/sop/{some_name}/{some_id}",
            f"/sop/{some_name}/schema?version={odd}",
            f"/sop/instances?after={odd}&limit={rng.randint(-5, 300)}&state={odd}",
            f"/sop/{odd}/{odd}/{odd}",
            "/workspace/tokens",
        ]
    )
    method = rng.choice(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH"])
    return method, path


@pytest.mark.parametrize("seed", [20240115])
def test_random_requests_never_fail_the_server(
    server: Server, target: tuple[str, str], seed: int
) -> None:
    name, instance_id = target
    rng = random.Random(seed)
    failures: list[str] = []
    callers = {True: server.client(), False: server.client(token=None)}
    for _ in range(REQUESTS):
        method, path = random_request(rng, name, instance_id)
        headers = {"Content-Type": rng.choice(CONTENT_TYPES)}
        if rng.random() < 0.2:
            headers["Idempotency-Key"] = rng.choice([*ODD_TEXT[:5], "k" * 300, "key-1"])
        if rng.random() < 0.1:
            headers["Authorization"] = rng.choice(["Bearer", "Bearer sk_x", "Basic a", ""])
        body = random_body(rng) if method != "GET" else None
        where = f"{method} {path[:80]!r} {body[:60] if body else b''!r}"
        authenticated = rng.random() >= 0.1
        try:
            response = callers[authenticated].request(
                method,
                path,
                content=body,
                headers={key: value.encode() for key, value in headers.items()},
            )
        except (httpx.InvalidURL, httpx.LocalProtocolError):
            continue  # httpx cannot even send it
        except httpx.TransportError as error:
            failures.append(f"{where} -> connection failed: {error!r}")
            # A new connection, so one failure does not hide the next request's answer.
            callers[authenticated] = server.client(None if not authenticated else server.token)
            continue
        if response.status_code >= 500:
            failures.append(f"{where} -> {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400:
            try:
                assert_error(response, response.status_code)
            except AssertionError as error:
                failures.append(f"{where} -> bad envelope: {error}")

    assert not failures, "\n".join(failures[:20])
    with server.client() as admin:
        assert admin.post(f"/sop/{name}/start", json={"inputs": {}}).status_code == 201


DEEP = 900


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": {"data": json.loads("[" * DEEP + "]" * DEEP)}},
        {"inputs": {"data": json.loads('{"a":' * DEEP + "1" + "}" * DEEP)}},
        {"inputs": {"n": 10**400}},
        {"inputs": {"who": "\ud83d\udca5"}},  # a valid surrogate pair: an emoji
    ],
    ids=["deep-list", "deep-object", "huge-int", "surrogate-pair"],
)
def test_extreme_values_are_refused_or_accepted_but_never_500(
    client: httpx.Client, target: tuple[str, str], body: dict[str, Any]
) -> None:
    name, _ = target
    data = json.dumps(body).encode()

    response = client.post(
        f"/sop/{name}/start", content=data, headers={"Content-Type": "application/json"}
    )

    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert_error(response, response.status_code)


LONE_SURROGATE = "\\ud800"  # JSON text for an unpaired UTF-16 surrogate: not Unicode text


@pytest.mark.parametrize(
    "where",
    ["start-inputs", "start-metadata-key", "submit-outputs", "cancel-reason", "token-name"],
)
def test_a_lone_surrogate_is_refused_not_500(
    server: Server, target: tuple[str, str], where: str
) -> None:
    name, instance_id = target
    text = LONE_SURROGATE
    path, body = {
        "start-inputs": (f"/sop/{name}/start", f'{{"inputs": {{"who": "{text}"}}}}'),
        "start-metadata-key": (
            f"/sop/{name}/start",
            f'{{"inputs": {{}}, "metadata": {{"{text}": 1}}}}',
        ),
        "submit-outputs": (
            f"/sop/{name}/{instance_id}/steps/fill/submit",
            f'{{"outputs": {{"note": "{text}"}}}}',
        ),
        "cancel-reason": (f"/sop/{name}/{instance_id}/cancel", f'{{"reason": "{text}"}}'),
        "token-name": ("/workspace/tokens", f'{{"name": "{text}"}}'),
    }[where]

    with server.client() as admin:
        response = admin.post(
            path, content=body.encode(), headers={"Content-Type": "application/json"}
        )

    assert response.status_code in (400, 422), response.text[:300]
    assert_error(response, response.status_code)


@pytest.mark.parametrize("where", ["start-inputs", "start-metadata", "token-name"])
def test_a_nul_character_is_stored_or_refused_not_500(
    request: pytest.FixtureRequest, server: Server, target: tuple[str, str], where: str
) -> None:
    name, _ = target
    path, body = {
        "start-inputs": (f"/sop/{name}/start", {"inputs": {"who": "a\u0000b"}}),
        "start-metadata": (f"/sop/{name}/start", {"inputs": {}, "metadata": {"k": "\u0000"}}),
        "token-name": ("/workspace/tokens", {"name": "bot\u0000"}),
    }[where]

    with server.client() as admin:
        response = admin.post(path, json=body)

    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert_error(response, response.status_code)
