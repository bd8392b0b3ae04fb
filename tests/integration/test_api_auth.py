"""Tokens: authentication, rotation, scopes and workspace isolation."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa
from tests.support import cli
from tests.support.api import (
    ULID,
    UTC_TIMESTAMP,
    assert_error,
    count,
    one_form_process,
    register,
    start,
    submitted,
    unique,
)
from tests.support.server import Server, new_token

from opensop.store.database import Database

SOME_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
# Requests that would succeed (or 404) with a token: without one they must be 401.
PROTECTED = [
    ("GET", "/sop/", None),
    ("GET", "/sop/instances", None),
    ("GET", "/sop/steps/pending", None),
    ("GET", "/sop/customer-onboarding/schema", None),
    ("GET", f"/sop/customer-onboarding/{SOME_ID}", None),
    ("GET", f"/sop/customer-onboarding/{SOME_ID}/steps", None),
    (
        "POST",
        "/sop/customer-onboarding/start",
        {"inputs": {"company_name": "Acme Corp", "country": "US"}},
    ),
    (
        "POST",
        f"/sop/customer-onboarding/{SOME_ID}/steps/collect-business-info/submit",
        {"outputs": {}},
    ),
    ("POST", f"/sop/customer-onboarding/{SOME_ID}/cancel", {}),
    ("POST", "/sop/processes/register", one_form_process("anonymous")),
    ("GET", "/workspace/tokens", None),
    ("POST", "/workspace/tokens", {"name": "x"}),
    ("DELETE", f"/workspace/tokens/{SOME_ID}", None),
]
# Requests whose body, path or query is also wrong: authentication still comes first.
PROTECTED_AND_INVALID = [
    ("POST", "/sop/customer-onboarding/start", b"{not json"),
    ("POST", "/sop/customer-onboarding/start", b'{"unexpected": 1}'),
    ("POST", f"/sop/customer-onboarding/{SOME_ID}/steps/x/submit", b"{not json"),
    ("POST", f"/sop/customer-onboarding/{SOME_ID}/steps/x/submit", b'{"unexpected": 1}'),
    ("POST", f"/sop/customer-onboarding/{SOME_ID}/cancel", b'{"reason": 5}'),
    ("POST", "/workspace/tokens", b"{}"),
    ("POST", "/sop/processes/register", b""),
    ("GET", "/sop/customer-onboarding/not-an-id", None),
    ("GET", "/sop/instances?state=bogus", None),
    ("GET", "/sop/instances?limit=500", None),
    ("GET", "/sop/instances?process=a%00b", None),
    ("POST", "/sop/customer-onboarding/start?x=%00", b'{"inputs": {}}'),
]


def create_token(client: httpx.Client, scopes: list[str] | None = None) -> dict[str, str]:
    body: dict[str, object] = {"name": unique("token")}
    if scopes is not None:
        body["scopes"] = scopes
    response = client.post("/workspace/tokens", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, str] = response.json()
    return created


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_a_request_without_a_token_is_401(
    server: Server, method: str, path: str, body: object
) -> None:
    with server.client(token=None) as anonymous:
        response = anonymous.request(method, path, json=body)

    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED_AND_INVALID)
def test_a_request_without_a_token_is_401_whatever_its_body(
    server_on_sqlite: Server,
    method: str,
    path: str,
    body: bytes | None,
) -> None:
    with server_on_sqlite.client(token=None) as anonymous:
        response = anonymous.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )

    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(
    "header",
    [
        {"X-SOP-Token": "not-a-token"},
        {"X-SOP-Token": "sk_"},
        {"X-SOP-Token": "sk_" + "a" * 500},
        {"X-SOP-Token": ""},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
    ],
    ids=[
        "no-prefix",
        "prefix-only",
        "too-long",
        "empty",
        "basic-auth",
        "bearer-empty",
        "bearer-garbage",
    ],
)
def test_a_malformed_token_is_401(server: Server, header: dict[str, str]) -> None:
    with server.client(token=None, headers=header) as caller:
        assert_error(caller.get("/sop/"), 401, "unauthorized")


def test_an_unknown_token_is_401(server: Server) -> None:
    with server.client(token=new_token()) as stranger:
        assert_error(stranger.get("/sop/"), 401, "unauthorized")
        assert_error(
            stranger.post(
                "/sop/customer-onboarding/start",
                json={"inputs": {"company_name": "X", "country": "US"}},
            ),
            401,
            "unauthorized",
        )


def test_bearer_authorization_is_accepted(server: Server) -> None:
    assert server.token is not None
    with server.client(token=None, headers={"Authorization": f"Bearer {server.token}"}) as bearer:
        assert bearer.get("/sop/").status_code == 200


def test_health_needs_no_token(server: Server) -> None:
    with server.client(token=None) as anonymous:
        response = anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_created_token_is_shown_once_and_works(client: httpx.Client, server: Server) -> None:
    response = client.post("/workspace/tokens", json={"name": "ci-bot"})

    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) >= {"id", "name", "token", "scopes", "created_at"}
    assert created["name"] == "ci-bot"
    assert created["token"].startswith("sk_")
    assert created["scopes"] == ["admin"]  # no scopes given: admin
    assert UTC_TIMESTAMP.match(created["created_at"])
    with server.client(token=created["token"]) as bot:
        assert bot.get("/sop/").status_code == 200

    listed = client.get("/workspace/tokens")
    assert listed.status_code == 200
    assert created["token"] not in listed.text
    [row] = [row for row in listed.json() if row["id"] == created["id"]]
    assert set(row) == {"id", "name", "scopes", "created_at", "last_used_at", "prefix"}
    assert created["token"].startswith(row["prefix"])
    assert row["prefix"].startswith("sk_") and len(row["prefix"]) < len(created["token"])
    assert row["last_used_at"] is None or UTC_TIMESTAMP.match(row["last_used_at"])


def test_token_secrets_are_stored_hashed(client: httpx.Client, server: Server) -> None:
    created = create_token(client)

    db = Database(server.database_url)
    try:
        with db.read() as conn:
            rows = [dict(row._mapping) for row in conn.execute(sa.text("SELECT * FROM tokens"))]
    finally:
        db.dispose()

    stored = json.dumps(rows, default=str)
    assert created["id"] in stored
    assert created["token"] not in stored
    assert hashlib.sha256(created["token"].encode()).hexdigest() in stored


def test_token_requests_are_validated(client: httpx.Client) -> None:
    assert_error(client.post("/workspace/tokens", json={}), 422, "invalid_inputs")
    assert_error(client.post("/workspace/tokens", json={"name": 7}), 422, "invalid_inputs")
    assert_error(
        client.post("/workspace/tokens", json={"name": "x", "scopes": ["root"]}),
        422,
        "invalid_inputs",
    )
    assert_error(
        client.post("/workspace/tokens", json={"name": "x", "scopes": "view"}),
        422,
        "invalid_inputs",
    )
    assert_error(client.post("/workspace/tokens", content=b"{nope"), 400, "invalid_payload")


def test_revocation_takes_effect_on_the_very_next_request(
    client: httpx.Client, server: Server
) -> None:
    created = create_token(client)
    with server.client(token=created["token"]) as doomed:
        assert doomed.get("/sop/instances").status_code == 200

        deleted = client.delete(f"/workspace/tokens/{created['id']}")

        assert deleted.status_code == 204
        assert deleted.content == b""
        assert_error(doomed.get("/sop/instances"), 401, "unauthorized")
    ids = [row["id"] for row in client.get("/workspace/tokens").json()]
    assert created["id"] not in ids


def test_revoking_an_unknown_token_is_404(client: httpx.Client) -> None:
    assert_error(client.delete("/workspace/tokens/01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404, "not_found")
    assert_error(client.delete("/workspace/tokens/nonsense"), 404, "not_found")


def test_revoking_twice_is_404(client: httpx.Client) -> None:
    created = create_token(client)
    assert client.delete(f"/workspace/tokens/{created['id']}").status_code == 204
    assert_error(client.delete(f"/workspace/tokens/{created['id']}"), 404, "not_found")


Action = Callable[[httpx.Client, str, str], httpx.Response]

ACTIONS: dict[str, Action] = {
    "start": lambda c, name, iid: c.post(f"/sop/{name}/start", json={"inputs": {}}),
    "submit": lambda c, name, iid: c.post(
        f"/sop/{name}/{iid}/steps/fill/submit", json={"outputs": {"note": "x"}}
    ),
    "cancel": lambda c, name, iid: c.post(f"/sop/{name}/{iid}/cancel"),
    "register": lambda c, name, iid: c.post(
        "/sop/processes/register", json=one_form_process(unique("scoped"))
    ),
    "create-token": lambda c, name, iid: c.post("/workspace/tokens", json={"name": "x"}),
    "list-tokens": lambda c, name, iid: c.get("/workspace/tokens"),
    "revoke-token": lambda c, name, iid: c.delete("/workspace/tokens/01HZZZZZZZZZZZZZZZZZZZZZZZ"),
    "view": lambda c, name, iid: c.get(f"/sop/{name}/{iid}"),
}
# The scope each action needs (admin can do everything).
NEEDS = {
    "start": "start",
    "submit": "advance",
    "cancel": "cancel",
    "register": "register",
    "create-token": "admin",
    "list-tokens": "admin",
    "revoke-token": "admin",
    "view": "view",
}


@pytest.fixture
def scoped_target(client: httpx.Client) -> tuple[str, str]:
    """A process and a running instance of it, for the scope checks to act on."""
    name = unique("scopes")
    register(client, one_form_process(name))
    return name, start(client, name)["id"]


@pytest.mark.parametrize("action", [a for a in ACTIONS if a != "view"])
def test_a_view_only_token_is_403_on_changes(
    client: httpx.Client, server: Server, scoped_target: tuple[str, str], action: str
) -> None:
    name, instance_id = scoped_target
    viewer = create_token(client, ["view"])
    before = count(client, process=name)

    with server.client(token=viewer["token"]) as view_only:
        assert_error(ACTIONS[action](view_only, name, instance_id), 403, "forbidden")
        assert view_only.get(f"/sop/{name}/{instance_id}").json()["state"] == "running"

    assert count(client, process=name) == before


@pytest.mark.parametrize("action", list(ACTIONS))
def test_each_action_needs_its_scope(
    client: httpx.Client, server: Server, scoped_target: tuple[str, str], action: str
) -> None:
    name, instance_id = scoped_target
    needed = NEEDS[action]
    others = [s for s in ("register", "start", "view", "advance", "cancel") if s != needed]
    lacking = create_token(client, others)
    granted = create_token(client, [needed])

    with server.client(token=lacking["token"]) as without:
        assert_error(ACTIONS[action](without, name, instance_id), 403, "forbidden")
    with server.client(token=granted["token"]) as holder:
        response = ACTIONS[action](holder, name, instance_id)
    assert response.status_code < 400 or response.status_code == 404, response.text


def test_view_tokens_read_everything(client: httpx.Client, server: Server) -> None:
    name = unique("viewer")
    register(client, one_form_process(name))
    instance_id = start(client, name)["id"]
    viewer = create_token(client, ["view"])

    with server.client(token=viewer["token"]) as view_only:
        for path in (
            "/sop/",
            f"/sop/{name}/schema",
            f"/sop/{name}/{instance_id}",
            f"/sop/{name}/{instance_id}/steps",
            "/sop/instances",
            "/sop/steps/pending",
        ):
            assert view_only.get(path).status_code == 200, path


def test_another_workspace_sees_nothing_of_this_one(client: httpx.Client, server: Server) -> None:
    name = unique("private")
    register(client, one_form_process(name))
    instance_id = start(client, name)["id"]
    workspace = unique("ws-b")
    other_secret = cli.create_token(server.database_url, workspace=workspace)
    assert other_secret.startswith("sk_")

    with server.client(token=other_secret) as other:
        assert other.get("/sop/").json() == []
        listed = other.get("/sop/instances")
        assert listed.status_code == 200
        assert listed.json() == []
        assert listed.headers["X-Total-Count"] == "0"
        assert other.get("/sop/steps/pending").json() == []
        for response in (
            other.get(f"/sop/{name}/schema"),
            other.get("/sop/customer-onboarding/schema"),
            other.post(f"/sop/{name}/start", json={"inputs": {}}),
            other.get(f"/sop/{name}/{instance_id}"),
            other.get(f"/sop/{name}/{instance_id}/steps"),
            other.post(
                f"/sop/{name}/{instance_id}/steps/fill/submit", json={"outputs": {"note": "x"}}
            ),
            other.post(f"/sop/{name}/{instance_id}/cancel"),
        ):
            assert_error(response, 404, "not_found")  # never 403: no hint that it exists
        [own] = other.get("/workspace/tokens").json()
        assert other_secret.startswith(own["prefix"])
        # Its own token list does not show this workspace's tokens, and it cannot revoke them.
        first_id = client.get("/workspace/tokens").json()[0]["id"]
        assert_error(other.delete(f"/workspace/tokens/{first_id}"), 404, "not_found")

        # The same name and version in another workspace is another process.
        other_doc = one_form_process(name, description="workspace B's own")
        assert other.post("/sop/processes/register", json=other_doc).status_code == 201
        theirs = other.post(f"/sop/{name}/start", json={"inputs": {}})
        assert theirs.status_code == 201
        assert ULID.match(theirs.json()["id"])

    assert client.get(f"/sop/{name}/{instance_id}").json()["state"] == "running"
    assert_error(client.get(f"/sop/{name}/{theirs.json()['id']}"), 404, "not_found")
    assert client.get(f"/sop/{name}/schema").json().get("description") is None
    assert count(client, process=name) == 1


def test_a_cli_token_can_be_limited_to_scopes(client: httpx.Client, server: Server) -> None:
    secret = cli.create_token(server.database_url, scopes="view")
    name = unique("cli-scope")
    register(client, one_form_process(name))

    with server.client(token=secret) as viewer:
        assert viewer.get("/sop/").status_code == 200
        assert_error(viewer.post(f"/sop/{name}/start", json={"inputs": {}}), 403, "forbidden")


def test_submitting_records_the_token_as_actor_when_no_one_is_named(
    client: httpx.Client,
) -> None:
    name = unique("actor")
    register(client, one_form_process(name))
    instance_id = start(client, name)["id"]

    step = submitted(client, name, instance_id, "fill", {"note": "done"})

    assert isinstance(step["decided_by"], str) and step["decided_by"]


def test_a_token_first_used_while_another_process_holds_the_write_lock_still_reads(
    client: httpx.Client, server: Server
) -> None:
    if not server.database_url.startswith("sqlite"):
        pytest.skip("the write lock is SQLite's")
    created = create_token(client, ["view"])
    holder = sqlite3.connect(sa.make_url(server.database_url).database or "", timeout=0)
    holder.execute("BEGIN IMMEDIATE")  # as another process busy writing would
    try:
        with server.client(token=created["token"]) as reader:
            # Recording the token's first use is a write; it must not hold the read up.
            answer = reader.get("/sop/instances?limit=1")
            still_held = holder.in_transaction
    finally:
        holder.rollback()
        holder.close()
    assert answer.status_code == 200, answer.text
    assert still_held
