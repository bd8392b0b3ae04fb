"""A real ``opensop serve`` in a subprocess, for tests that speak HTTP to it.

The server listens on a free loopback port, uses the database URL it is given and gets a
known bootstrap admin token through ``OPENSOP_API_TOKEN``. It is always stopped at the
end (SIGTERM, then SIGKILL), and an ``atexit`` hook stops any server a crashed test run
left behind::

    with running_server(database_url, load=[EXAMPLES]) as server:
        with server.client() as client:
            assert client.get("/sop/").status_code == 200

Each runs in a process group of its own, so a test can crash it like a power cut
(``server.kill()``: SIGKILL to the group). ``running_worker`` starts ``opensop worker``,
the job runner without HTTP, the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
STARTUP_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
_UNSET: Any = object()
# Every server not yet stopped, for the atexit hook (a test run killed midway).
_live: set[subprocess.Popen[bytes]] = set()


def new_token() -> str:
    """A fresh token secret in the engine's shape (``sk_`` + URL-safe text)."""
    return "sk_test_" + secrets.token_urlsafe(24)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without OPENSOP_* settings, plus ``extra``.

    A developer's own OPENSOP_DATABASE_URL or token must never leak into a test server.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENSOP_")}
    env.update(extra)
    return env


@dataclass
class Server:
    """A running server: where it listens, its admin token, and its log so far."""

    base_url: str
    token: str | None
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _clients: list[httpx.Client] = field(default_factory=list, repr=False)
    _final_log: str | None = field(default=None, repr=False)

    def client(self, token: str | None = _UNSET, **options: Any) -> httpx.Client:
        """An ``httpx.Client`` on this server sending ``token`` as X-SOP-Token.

        Without ``token`` it uses the bootstrap admin token; ``token=None`` sends none.
        Clients are closed when the server stops, or earlier by the caller.
        """
        secret = self.token if token is _UNSET else token
        headers = {"X-SOP-Token": secret} if secret else {}
        headers.update(options.pop("headers", {}))
        client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=options.pop("timeout", 30.0),
            # Plain HTTP on loopback: skip building a TLS context (~40 ms per client).
            verify=False,
            **options,
        )
        self._clients.append(client)
        return client

    def log(self) -> str:
        """What the server printed (stdout and stderr), also after it stopped."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Close its clients, stop the process and keep what it printed."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        stop(self.process)
        self._final_log = self.log()

    def kill(self) -> None:
        """Crash it: SIGKILL its whole process group, no chance to clean up."""
        kill(self.process)


def serve_command(
    host: str, port: int, database_url: str, load: Sequence[Path], args: Sequence[str] = ()
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "opensop.cli.main",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--database-url",
        database_url,
    ]
    for folder in load:
        command += ["--load", str(folder)]
    return [*command, *args]


@contextlib.contextmanager
def running_server(
    database_url: str,
    *,
    load: Sequence[Path] = (),
    token: str | None = _UNSET,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    attempts: int = 3,
) -> Iterator[Server]:
    """Start ``opensop serve`` and yield it once ``/healthz`` answers 200.

    ``token`` defaults to a fresh bootstrap admin token; ``None`` starts the server with
    no token configured. ``args`` go after the others (``["--workers", "0"]``). A port
    taken between choosing and binding is retried.
    """
    secret = new_token() if token is _UNSET else token
    extra = dict(env or {})
    if secret is not None:
        extra["OPENSOP_API_TOKEN"] = secret
    with tempfile.TemporaryDirectory(prefix="opensop-server-") as folder:
        for attempt in range(1, attempts + 1):
            log_path = Path(folder) / f"server-{attempt}.log"
            port = free_port()
            with log_path.open("wb") as log:
                process = _spawn(
                    serve_command("127.0.0.1", port, database_url, load, args),
                    clean_env(**extra),
                    log,
                )
            server = Server(f"http://127.0.0.1:{port}", secret, database_url, process, log_path)
            try:
                if _wait_until_healthy(server, last_attempt=attempt == attempts):
                    yield server
                    return
            finally:
                server.stop()


def _spawn(command: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    # A session of its own: kill() can take the whole group without touching pytest.
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    _live.add(process)
    return process


def _wait_until_healthy(server: Server, *, last_attempt: bool) -> bool:
    """True once healthy; False if it exited because the port was taken (retry)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    with httpx.Client(base_url=server.base_url, timeout=2.0, verify=False) as probe:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                log = server.log()
                if "address already in use" in log.lower() and not last_attempt:
                    return False
                raise RuntimeError(
                    f"opensop serve exited with status {server.process.returncode} before "
                    f"it answered on {server.base_url}; its output:\n{log}"
                )
            with contextlib.suppress(httpx.TransportError):
                if probe.get("/healthz").status_code == 200:
                    return True
            time.sleep(0.05)
    raise RuntimeError(
        f"opensop serve did not answer GET /healthz with 200 on {server.base_url} within "
        f"{STARTUP_TIMEOUT_SECONDS:.0f} s; its output so far:\n{server.log()}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL: no server outlives its test."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
    finally:
        _live.discard(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``_spawn`` gave the process, and reap it."""
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    finally:
        _live.discard(process)


@dataclass
class Worker:
    """A running ``opensop worker`` (the job runner alone) and its log."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_worker(
    database_url: str, *, concurrency: int = 4, env: dict[str, str] | None = None
) -> Iterator[Worker]:
    """Start ``opensop worker`` on ``database_url``; yield once it says it runs.

    Its database must already be migrated (start a server on it first).
    """
    command = [
        sys.executable,
        "-m",
        "opensop.cli.main",
        "worker",
        "--database-url",
        database_url,
        "--concurrency",
        str(concurrency),
    ]
    with tempfile.TemporaryDirectory(prefix="opensop-worker-") as folder:
        log_path = Path(folder) / "worker.log"
        with log_path.open("wb") as log:
            process = _spawn(command, clean_env(**(env or {})), log)
        worker = Worker(process, log_path)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
            while "running" not in worker.log():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"opensop worker did not start; its output:\n{worker.log()}")
                time.sleep(0.05)
            yield worker
        finally:
            stop(process)


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_live):
        stop(process)
