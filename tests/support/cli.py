"""Run the real ``opensop`` command line in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.server import REPO_ROOT, clean_env

CLI_TIMEOUT_SECONDS = 60


def opensop_command() -> list[str]:
    """The installed ``opensop`` entry point next to this Python, else ``python -m``."""
    script = Path(sys.executable).with_name("opensop")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "opensop.cli.main"]


def run_cli(*args: str, cwd: Path = REPO_ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``opensop ARGS`` with a clean OPENSOP_* environment; never raises on failure."""
    return subprocess.run(
        [*opensop_command(), *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def create_token(
    database_url: str, *, workspace: str = "default", scopes: str | None = None, name: str = "cli"
) -> str:
    """A new token made by ``opensop token create`` (no server needed)."""
    args = [
        "token",
        "create",
        "--database-url",
        database_url,
        "--workspace",
        workspace,
        "--name",
        name,
    ]
    if scopes:
        args += ["--scopes", scopes]
    result = run_cli(*args)
    assert result.returncode == 0, f"opensop token create failed:\n{result.stderr}"
    return result.stdout.strip()
