"""What one W1 instance costs, piece by piece: the service in-process, and the HTTP stack.

Complements ``profile_w1.py`` (sampled) with timed pieces, each run N times in a row:

- in this process, no HTTP, on a fresh SQLite file (WAL, the given synchronous level),
  through the same ``Service`` the server builds: a whole W1 instance (authenticate +
  start + authenticate + submit), then each piece alone (authenticate, start, submit,
  the runner's ``next_due_at`` that every submit triggers, an empty read transaction, a
  round trip of an empty unit through the group-commit writer, a plain write transaction
  on a pooled connection, the thread-pool hop every route makes, the response JSON);
- over HTTP, 1 raw keep-alive client against ``opensop serve``: the server CPU per request
  of an unknown route (404: uvicorn + FastAPI routing + error handler, no thread hop, no
  database) and of ``GET /healthz`` (adds one thread-pool hop and one read transaction).

Wall time is per call; CPU is this process's (all threads, the writer's included).

    .venv/bin/python bench/w1_parts.py
    .venv/bin/python bench/w1_parts.py --calls 5000 --sqlite-synchronous NORMAL
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import (
    HOST,
    VAR_DIR,
    Server,
    banner,
    cpu_seconds,
    machine_line,
    new_token,
    source_line,
    sqlite_url,
    terminate_as_exit,
)
from keepalive import RawConnection, run_async
from w1_peer import FORM_STEP, PROCESS, PROCESS_DIR

START = {"inputs": {"who": "Ada Lovelace"}}
SUBMIT = {"outputs": {"approved": True, "note": "looks fine"}}


@dataclass(frozen=True)
class Timing:
    name: str
    calls: int
    wall: float
    cpu: float

    def line(self) -> str:
        per_wall = self.wall / self.calls * 1e6
        per_cpu = self.cpu / self.calls * 1e6
        return f"  {self.name:66} {per_wall:9.1f} {per_cpu:9.1f}"


WARMUP_CALLS = 50


def timed(name: str, calls: int, action: Callable[[int], object]) -> Timing:
    """``action(n)`` for n = 0, 1, ...: WARMUP_CALLS unmeasured, then ``calls`` measured."""
    for number in range(WARMUP_CALLS):  # warm caches (statements, definitions)
        action(number)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for number in range(WARMUP_CALLS, WARMUP_CALLS + calls):
        action(number)
    return Timing(name, calls, time.perf_counter() - wall0, time.process_time() - cpu0)


def in_process(folder: Path, synchronous: str, calls: int) -> list[Timing]:
    import sqlalchemy as sa
    from starlette.concurrency import run_in_threadpool

    from opensop.api import serialize
    from opensop.config import Settings
    from opensop.server import build_service, load_folder

    token = new_token()
    settings = Settings(
        database_url=sqlite_url(folder / "parts.db"), sqlite_synchronous=synchronous
    )
    service = build_service(settings)
    service.bootstrap_token("default", token)
    load_folder(service, PROCESS_DIR, "default")
    principal = service.authenticate(token)

    def w1(_: int) -> None:
        started = service.start(service.authenticate(token), PROCESS, START)
        service.submit(service.authenticate(token), PROCESS, started.view.run.id, FORM_STEP, SUBMIT)

    parked: list[str] = []

    def start(_: int) -> None:
        parked.append(service.start(principal, PROCESS, START).view.run.id)

    def submit(number: int) -> None:
        service.submit(principal, PROCESS, parked[number], FORM_STEP, SUBMIT)

    def empty_read(_: int) -> None:
        with service.db.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def plain_write(_: int) -> None:
        with service.db.write() as conn:
            conn.execute(sa.text("SELECT 1"))

    view = service.start(principal, PROCESS, START).view

    # The same token lookup on a plain sqlite3 connection: what a read costs without
    # SQLAlchemy's pool checkout, begin hook and result machinery.
    raw = sqlite3.connect(folder / "parts.db", isolation_level=None, check_same_thread=False)
    digest = hashlib.sha256(token.encode()).hexdigest()

    def raw_token_read(_: int) -> None:
        raw.execute("BEGIN")
        row = raw.execute(
            "SELECT id, workspace_id, name, scopes, revoked_at FROM tokens"
            " WHERE secret_hash = ? AND revoked_at IS NULL",
            (digest,),
        ).fetchone()
        raw.execute("COMMIT")
        if row is None:
            raise RuntimeError("the bootstrap token is not in the store")

    def response(_: int) -> None:
        json.dumps(serialize.instance_json(view), ensure_ascii=False).encode()

    async def hops(count: int) -> None:
        for _ in range(count):
            await run_in_threadpool(int)

    def hop_timing(count: int) -> Timing:
        run_async(hops(50))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        run_async(hops(count))
        return Timing(
            "thread-pool hop of a no-op (run_in_threadpool, uvloop)",
            count,
            time.perf_counter() - wall0,
            time.process_time() - cpu0,
        )

    try:
        timings = [
            timed("W1 instance: authenticate + start + authenticate + submit", calls, w1),
            timed(
                "authenticate (sha256 + token read txn)",
                calls,
                lambda _: service.authenticate(token),
            ),
            timed("start (W1, form active; no auth)", calls, start),
        ]
        timings.append(timed("submit (W1 form -> completed; no auth)", calls, submit))
        timings += [
            timed(
                "runner next_due_at (read txn, 2 queries)",
                calls,
                lambda _: service.work.next_due_at(),
            ),
            timed("empty read transaction (db.read + SELECT 1)", calls, empty_read),
            timed(
                "token read on a raw sqlite3 connection (BEGIN; SELECT; COMMIT)",
                calls,
                raw_token_read,
            ),
            timed(
                "group-commit writer round trip, empty unit",
                calls,
                lambda _: service.db.run_write(lambda conn: None),
            ),
            timed(
                "plain write txn on a pooled connection (db.write + SELECT 1)", calls, plain_write
            ),
            timed("start answer: serialize.instance_json + json.dumps", calls, response),
            hop_timing(calls),
        ]
    finally:
        raw.close()
        service.db.dispose()
    return timings


@dataclass(frozen=True)
class HttpCost:
    name: str
    requests: int
    seconds: float
    server_cpu: float

    def line(self) -> str:
        per_wall = self.seconds / self.requests * 1e6
        per_cpu = self.server_cpu / self.requests * 1e6
        return f"  {self.name:66} {per_wall:9.1f} {per_cpu:9.1f}"


async def hammer(port: int, token: str, path: str, count: int, expect: int) -> None:
    async with RawConnection(HOST, port, token) as conn:
        for _ in range(count):
            status, body = await conn.request("GET", path)
            if status != expect:
                raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")


def over_http(folder: Path, synchronous: str, calls: int) -> list[HttpCost]:
    token = new_token()
    costs = []
    with Server.opensop(
        folder / "http.db",
        token=token,
        synchronous=synchronous,
        log_dir=folder,
        load_dir=PROCESS_DIR,
    ) as server:
        for name, path, expect in [
            ("GET unknown route -> 404 (HTTP stack + routing + error handler)", "/nope", 404),
            ("GET /healthz (HTTP stack + thread-pool hop + read txn)", "/healthz", 200),
        ]:
            run_async(hammer(server.port, token, path, 100, expect))
            cpu0, wall0 = cpu_seconds(server.pid), time.perf_counter()
            run_async(hammer(server.port, token, path, calls, expect))
            costs.append(
                HttpCost(name, calls, time.perf_counter() - wall0, cpu_seconds(server.pid) - cpu0)
            )
    return costs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per piece")
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument(
        "--work-dir", type=Path, default=VAR_DIR / "w1_parts", help="SQLite files and logs"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    print(banner("w1_parts: one W1 instance, piece by piece"))
    print(machine_line())
    print(source_line())
    print(f"SQLite WAL synchronous={args.sqlite_synchronous}; {args.calls} calls per piece")
    try:
        with terminate_as_exit():
            timings = in_process(folder, args.sqlite_synchronous, args.calls)
            costs = over_http(folder, args.sqlite_synchronous, args.calls)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(banner("in process, no HTTP (1 caller thread + the writer thread)"))
    print(f"  {'piece':66} {'wall µs':>9} {'CPU µs':>9}")
    for timing in timings:
        print(timing.line())
    whole = timings[0]
    print(f"  -> the service alone runs {whole.calls / whole.wall:,.0f} W1 instances/s on 1 thread")
    print(banner("over HTTP (1 raw keep-alive client; server CPU per request)"))
    print(f"  {'request':66} {'wall µs':>9} {'srv CPU µs':>9}")
    for cost in costs:
        print(cost.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
