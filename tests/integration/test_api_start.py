"""`POST /sop/:name/start`: validation of the body and the inputs, size limit, idempotency."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.support.api import (
    ULID,
    UTC_TIMESTAMP,
    assert_error,
    count,
    detail_codes,
    form,
    process,
    register,
    unique,
)

INPUTS = [
    {"name": "company", "type": "string", "required": True, "min_length": 1},
    {"name": "employees", "type": "integer", "required": True},
    {"name": "country", "type": "enum", "values": ["US", "MX"], "required": True},
    {"name": "email", "type": "string", "format": "email"},
    {"name": "active", "type": "boolean"},
    {"name": "revenue", "type": "number"},
    {"name": "tags", "type": "string[]"},
    {"name": "tier", "type": "string", "default": "basic"},
]
VALID = {"company": "Acme", "employees": 12, "country": "US"}


@pytest.fixture
def typed(client: httpx.Client) -> str:
    """A fresh process with typed inputs (its instance count starts at 0)."""
    name = unique("typed")
    register(client, process(name, [form("review")], inputs=INPUTS))
    return name


def start_raw(client: httpx.Client, name: str, body: Any) -> httpx.Response:
    return client.post(f"/sop/{name}/start", json=body)


def test_valid_inputs_start_an_instance_with_defaults(client: httpx.Client, typed: str) -> None:
    response = start_raw(
        client,
        typed,
        {
            "inputs": {
                **VALID,
                "email": "ana@example.com",
                "active": False,
                "revenue": 1.5,
                "tags": ["a"],
            },
            "metadata": {"source": "test"},
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert ULID.match(body["id"])
    assert (body["process"], body["version"], body["state"]) == (typed, "1.0", "running")
    assert UTC_TIMESTAMP.match(body["started_at"])
    assert body["inputs"]["tier"] == "basic"  # the declared default is filled in
    assert body["inputs"]["active"] is False
    assert body["metadata"] == {"source": "test"}
    assert body["completed_at"] is None


def test_an_unknown_process_is_404(client: httpx.Client) -> None:
    response = start_raw(client, unique("missing"), {"inputs": {}})

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"inputs=1", b'{"inputs": {}', b"\xff\xfe", b"NaN"],
    ids=["broken", "empty", "form-encoded", "truncated", "not-utf8", "nan"],
)
def test_a_body_that_is_not_json_is_400(client: httpx.Client, typed: str, content: bytes) -> None:
    response = client.post(
        f"/sop/{typed}/start", content=content, headers={"Content-Type": "application/json"}
    )

    assert_error(response, 400, "invalid_payload")
    assert count(client, process=typed) == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"inputs": None}, {"inputs": []}, {"inputs": "x"}, {"inputs": 3}, [], "inputs", 7],
    ids=["missing", "null", "list", "string", "number", "array-body", "string-body", "number"],
)
def test_inputs_missing_or_not_an_object_is_422(
    client: httpx.Client, typed: str, body: Any
) -> None:
    error = assert_error(start_raw(client, typed, body), 422, "invalid_inputs")

    assert error.get("details"), error
    assert count(client, process=typed) == 0


def test_every_violation_is_reported(client: httpx.Client, typed: str) -> None:
    inputs = {
        "employees": "twelve",
        "country": "FR",
        "email": "not-an-email",
        "active": "true",
        "revenue": True,
        "tags": ["ok", 3],
        "nickname": "x",
    }

    body = assert_error(start_raw(client, typed, {"inputs": inputs}), 422, "invalid_inputs")

    codes = detail_codes(body)
    assert codes["company"] == "required"
    assert codes["employees"] == "type_mismatch"
    assert codes["country"] == "not_in_enum"
    assert codes["email"] == "invalid_format"
    assert codes["active"] == "type_mismatch"
    assert codes["revenue"] == "type_mismatch"
    assert any(
        field.startswith("tags") and code == "type_mismatch" for field, code in codes.items()
    ), codes
    assert codes["nickname"] == "unknown_field"
    by_field = {item["field"]: item for item in body["details"]}
    assert by_field["company"]["expected"] == "string"
    assert by_field["employees"]["expected"] == "integer"
    assert by_field["country"]["expected"] == ["US", "MX"]
    assert by_field["active"]["expected"] == "boolean"
    assert by_field["email"]["expected"] == "email"
    for item in body["details"]:
        assert isinstance(item["field"], str)
        assert item["code"] in {
            "required",
            "type_mismatch",
            "not_in_enum",
            "invalid_format",
            "unknown_field",
        }
    assert count(client, process=typed) == 0


@pytest.mark.parametrize(
    "value",
    ["true", "false", 1, 0, "yes", []],
    ids=["str-true", "str-false", "one", "zero", "yes", "list"],
)
def test_a_boolean_must_be_a_json_boolean(client: httpx.Client, typed: str, value: Any) -> None:
    body = assert_error(
        start_raw(client, typed, {"inputs": {**VALID, "active": value}}), 422, "invalid_inputs"
    )

    assert detail_codes(body) == {"active": "type_mismatch"}


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("employees", 3.5, "type_mismatch"),
        ("employees", True, "type_mismatch"),
        ("employees", "12", "type_mismatch"),
        ("country", "us", "not_in_enum"),
        ("country", 1, "not_in_enum"),
        ("company", "", "invalid_format"),
        ("company", None, "required"),
        ("email", "a@", "invalid_format"),
        ("revenue", "1.5", "type_mismatch"),
        ("tags", "a", "type_mismatch"),
    ],
)
def test_one_wrong_value_gives_one_detail(
    client: httpx.Client, typed: str, field: str, value: Any, code: str
) -> None:
    body = assert_error(
        start_raw(client, typed, {"inputs": {**VALID, field: value}}), 422, "invalid_inputs"
    )

    assert detail_codes(body) == {field: code}


def test_integer_accepts_a_whole_float(client: httpx.Client, typed: str) -> None:
    response = start_raw(client, typed, {"inputs": {**VALID, "employees": 12.0}})

    assert response.status_code == 201, response.text


def test_metadata_must_be_an_object(client: httpx.Client, typed: str) -> None:
    response = start_raw(client, typed, {"inputs": VALID, "metadata": "x"})

    assert_error(response, 422, "invalid_inputs")


def test_a_body_over_one_mebibyte_is_413(client: httpx.Client, typed: str) -> None:
    padding = "x" * (1024 * 1024)
    response = start_raw(client, typed, {"inputs": {**VALID, "company": padding}})

    assert_error(response, 413, "payload_too_large")
    assert count(client, process=typed) == 0


def test_a_streamed_body_over_the_limit_is_413(client: httpx.Client, typed: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"inputs": {"company": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}}'

    response = client.post(
        f"/sop/{typed}/start", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert_error(response, 413, "payload_too_large")
    assert count(client, process=typed) == 0


def test_a_body_over_the_limit_without_a_valid_token_is_401_first(
    client: httpx.Client, typed: str
) -> None:
    oversized = b'{"inputs": {"company": "' + b"x" * (1024 * 1024) + b'"}}'
    for headers in ({}, {"Authorization": "Bearer sk_not_a_real_token_1234"}):
        response = httpx.post(
            str(client.base_url.join(f"/sop/{typed}/start")),
            content=oversized,
            headers={"Content-Type": "application/json", **headers},
        )
        assert_error(response, 401, "unauthorized")


def test_a_trailing_slash_names_no_route(client: httpx.Client, typed: str) -> None:
    response = client.post(f"/sop/{typed}/start/", json={"inputs": VALID})

    assert_error(response, 404, "not_found")
    assert count(client, process=typed) == 0


def test_nul_in_a_path_or_query_is_refused_before_any_lookup(
    client: httpx.Client, typed: str
) -> None:
    # PostgreSQL cannot even compare text holding a NUL: no lookup may see one.
    assert_error(client.post(f"/sop/{typed}%00x/start", json={"inputs": VALID}), 404, "not_found")
    assert_error(client.get(f"/sop/{typed}%00x/schema"), 404, "not_found")
    assert_error(client.get("/sop/instances?process=a%00b"), 422, "invalid_query")
    assert_error(client.get("/sop/instances?after=a%00b"), 422, "invalid_query")


def test_a_body_just_under_the_limit_is_read(client: httpx.Client, typed: str) -> None:
    response = start_raw(client, typed, {"inputs": {**VALID, "company": "x" * 1_000_000}})

    assert response.status_code == 201, response.text[:300]


def test_the_same_idempotency_key_and_body_return_the_first_instance(
    client: httpx.Client, typed: str
) -> None:
    key = str(uuid.uuid4())
    body = {"inputs": VALID, "metadata": {"order": 1}}

    first = client.post(f"/sop/{typed}/start", json=body, headers={"Idempotency-Key": key})
    again = client.post(f"/sop/{typed}/start", json=body, headers={"Idempotency-Key": key})

    assert first.status_code == 201, first.text
    assert again.status_code in (200, 201), again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["state"] == first.json()["state"]
    assert count(client, process=typed) == 1


def test_the_same_idempotency_key_with_another_body_is_409(
    client: httpx.Client, typed: str
) -> None:
    key = str(uuid.uuid4())
    first = client.post(
        f"/sop/{typed}/start", json={"inputs": VALID}, headers={"Idempotency-Key": key}
    )
    other = {"inputs": {**VALID, "employees": 13}}

    conflict = client.post(f"/sop/{typed}/start", json=other, headers={"Idempotency-Key": key})

    assert first.status_code == 201
    assert_error(conflict, 409)
    assert count(client, process=typed) == 1


def test_different_idempotency_keys_start_different_instances(
    client: httpx.Client, typed: str
) -> None:
    ids = {
        client.post(
            f"/sop/{typed}/start",
            json={"inputs": VALID},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ).json()["id"]
        for _ in range(3)
    }

    assert len(ids) == 3


def test_a_repeat_returns_the_instance_as_it_is_now(client: httpx.Client, typed: str) -> None:
    key = str(uuid.uuid4())
    first = client.post(
        f"/sop/{typed}/start", json={"inputs": VALID}, headers={"Idempotency-Key": key}
    ).json()
    client.post(f"/sop/{typed}/{first['id']}/cancel")

    again = client.post(
        f"/sop/{typed}/start", json={"inputs": VALID}, headers={"Idempotency-Key": key}
    )

    assert again.json()["id"] == first["id"]
    assert again.json()["state"] == "cancelled"


def test_failed_starts_change_nothing(client: httpx.Client, typed: str) -> None:
    attempts = [
        client.post(f"/sop/{typed}/start", content=b"{", headers={"Content-Type": "x"}),
        start_raw(client, typed, {}),
        start_raw(client, typed, {"inputs": {"country": "FR"}}),
        start_raw(client, typed, {"inputs": VALID, "extra": 1}),
        start_raw(client, typed, {"inputs": {**VALID, "company": "x" * (1 << 20)}}),
    ]

    assert all(400 <= response.status_code < 500 for response in attempts)
    assert count(client, process=typed) == 0


def test_an_idempotency_key_reused_on_another_process_does_not_return_its_instance(
    client: httpx.Client, typed: str
) -> None:
    other = unique("other")
    register(client, process(other, [form("review")], inputs=INPUTS))
    key = str(uuid.uuid4())
    first = client.post(
        f"/sop/{typed}/start", json={"inputs": VALID}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201

    reused = client.post(
        f"/sop/{other}/start", json={"inputs": VALID}, headers={"Idempotency-Key": key}
    )

    if reused.status_code == 409:
        assert_error(reused, 409)
    else:
        assert reused.status_code == 201, reused.text
        assert reused.json()["process"] == other
