"""The `opensop` command line as a user runs it: tokens, migrations, a live server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from tests.support.cli import run_cli
from tests.support.server import EXAMPLES, new_token, running_server

TOKEN = re.compile(r"^sk_[A-Za-z0-9_-]{20,}$")


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_token_create_json_prints_one_object_with_the_token(sqlite_url: str) -> None:
    result = run_cli("token", "create", "--json", "--database-url", sqlite_url)

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert TOKEN.match(created["token"])
    assert created["scopes"] == ["admin"]
    assert created["workspace"] == "default"
    assert created["token"].startswith(created["prefix"])
    assert {"id", "name", "created_at"} <= set(created)
    assert result.stdout.count("\n") == 1


def test_token_create_prints_only_the_token(sqlite_url: str) -> None:
    result = run_cli("token", "create", "--database-url", sqlite_url, "--name", "deploy-bot")

    assert result.returncode == 0, result.stderr
    assert TOKEN.match(result.stdout.strip()), result.stdout
    assert result.stdout.strip() == result.stdout.rstrip("\n")
    assert len(result.stdout.splitlines()) == 1


def test_token_create_takes_scopes_and_a_workspace(sqlite_url: str) -> None:
    result = run_cli(
        "token",
        "create",
        "--json",
        "--database-url",
        sqlite_url,
        "--scopes",
        "view,start",
        "--workspace",
        "team-b",
    )

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert sorted(created["scopes"]) == ["start", "view"]
    assert created["workspace"] == "team-b"


def test_token_create_refuses_an_unknown_scope(sqlite_url: str) -> None:
    result = run_cli("token", "create", "--database-url", sqlite_url, "--scopes", "root")

    assert result.returncode != 0
    assert result.stdout == ""
    assert "root" in result.stderr


def test_token_create_reads_the_database_url_from_the_environment(sqlite_url: str) -> None:
    result = run_cli("token", "create", OPENSOP_DATABASE_URL=sqlite_url)

    assert result.returncode == 0, result.stderr
    assert TOKEN.match(result.stdout.strip())
    assert sqlite_path(sqlite_url).exists()


def test_migrate_creates_a_fresh_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'folder' / 'opensop.db'}"

    first = run_cli("migrate", "--database-url", url)
    again = run_cli("migrate", "--database-url", url)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert sqlite_path(url).is_file()
    assert "up to date" in first.stdout


@pytest.mark.postgres
def test_migrate_brings_a_fresh_postgres_database_up_to_date(postgres_url: str) -> None:
    first = run_cli("migrate", "--database-url", postgres_url)
    again = run_cli("migrate", "--database-url", postgres_url)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    with psycopg.connect(postgres_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"instances", "steps", "events", "tokens", "processes"} <= tables, tables
    password_free = postgres_url.split("@")[-1]
    assert password_free in first.stdout


@pytest.mark.parametrize(
    ("command", "url"),
    [
        ("migrate", "mysql://nobody@nowhere/db"),
        ("token create", "mysql://nobody@nowhere/db"),
        ("serve", "mysql://nobody@nowhere/db"),
        ("migrate", "postgresql://nobody@127.0.0.1:1/db"),
    ],
    ids=["migrate-unsupported", "token-unsupported", "serve-unsupported", "migrate-unreachable"],
)
def test_a_bad_database_url_is_reported_without_a_traceback(command: str, url: str) -> None:
    result = run_cli(*command.split(), "--database-url", url)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-500:]
    assert url.split("://")[0] in result.stderr


def test_a_cli_token_opens_a_server_started_without_one(sqlite_url: str) -> None:
    created = run_cli("token", "create", "--database-url", sqlite_url)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()

    with running_server(sqlite_url, load=[EXAMPLES], token=None) as server:
        with server.client(token=None) as anonymous:
            assert anonymous.get("/healthz").status_code == 200
            assert anonymous.get("/sop/").status_code == 401  # no token configured: not open
        with server.client(token=token) as user:
            listed = user.get("/sop/")
            started = user.post(
                "/sop/customer-onboarding/start",
                json={"inputs": {"company_name": "Acme Corp", "country": "US"}},
            )

    assert listed.status_code == 200
    assert "customer-onboarding" in [row["name"] for row in listed.json()]
    assert started.status_code == 201, started.text
    assert "registered" in server.log()


def test_serve_keeps_what_it_stored_across_restarts(sqlite_url: str) -> None:
    with running_server(sqlite_url, load=[EXAMPLES]) as first, first.client() as client:
        started = client.post(
            "/sop/customer-onboarding/start",
            json={"inputs": {"company_name": "Acme Corp", "country": "MX"}},
        )
        assert started.status_code == 201
        instance_id = started.json()["id"]

    with running_server(sqlite_url, load=[EXAMPLES]) as second, second.client() as client:
        again = client.get(f"/sop/customer-onboarding/{instance_id}")

    assert again.status_code == 200
    assert again.json()["state"] == "running"
    assert "unchanged" in second.log()


def test_validate_accepts_the_example(tmp_path: Path) -> None:
    result = run_cli("validate", str(EXAMPLES / "customer-onboarding.sop.yaml"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_validate_points_at_the_broken_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sop.yaml"
    broken.write_text(
        'opensop: "0.1"\nprocess:\n  name: Bad Name\n  version: "1.0"\n'
        "  steps:\n    - {id: a, type: form}\n"
    )

    result = run_cli("validate", str(broken))

    assert result.returncode == 1
    assert f"{broken}:3" in result.stdout


def test_serve_starts_again_after_its_bootstrap_token_was_revoked(sqlite_url: str) -> None:
    token = new_token()
    with running_server(sqlite_url, token=token) as first, first.client() as admin:
        [own] = [
            row for row in admin.get("/workspace/tokens").json() if token.startswith(row["prefix"])
        ]
        assert admin.delete(f"/workspace/tokens/{own['id']}").status_code == 204

    with running_server(sqlite_url, token=token) as second, second.client() as client:
        assert client.get("/healthz").status_code == 200
        # Revocation is permanent: restarting with the same secret does not revive it.
        assert client.get("/sop/").status_code == 401
