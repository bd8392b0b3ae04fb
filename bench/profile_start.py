"""Where a start's time goes: py-spy samples of ``opensop serve`` under the start load.

Starts the server on a fresh SQLite file, drives ``POST /sop/customer-onboarding/start``
with N keep-alive clients (as http_start.py does) and meanwhile samples the server with
``py-spy record``. Two views, one per run:

- ``--view cpu`` (default): only samples that hold the GIL (``py-spy --gil``), i.e. the
  Python work that one core has to do per request, and where it goes;
- ``--view wall``: every thread, idle ones included (``py-spy --idle``): where requests
  wait (the SQLite write lock, the thread pool queue, the event loop).

Each sample is charged to an owner (the outermost OpenSOP or framework frame: auth, the
start use case, response building ...) and a mechanism (the innermost recognisable frame:
SQLAlchemy statement building, compile, execution, JSON, sqlite3 calls ...). The raw
collapsed stacks are kept under var/bench/profile/ for flame graphs.

py-spy is a profiling tool, not a project dependency; install it into the venv by hand:
``.venv/bin/pip install py-spy``. It needs ptrace rights (root, or CAP_SYS_PTRACE).

    .venv/bin/python bench/profile_start.py                  # CPU view, 16 clients, 15 s
    .venv/bin/python bench/profile_start.py --view wall
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from common import (
    START_BODY,
    START_PATH,
    VAR_DIR,
    Server,
    auth_headers,
    banner,
    cpu_seconds,
    machine_line,
    new_token,
    py_spy_recording,
    run_load,
    terminate_as_exit,
)

# Owner: the first rule whose text is in any frame of the stack (rule order decides).
OWNERS: list[tuple[str, str]] = [
    ("Service.authenticate", "auth (token lookup + touch)"),
    ("Service.start", "start use case (Service.start)"),
    ("serialize.py", "response building (serialize + JSONResponse)"),
    ("JSONResponse", "response building (serialize + JSONResponse)"),
    ("read_json", "request body (read + json.loads)"),
    ("read_body", "request body (read + json.loads)"),
    ("opensop/api/", "route code (other)"),
    ("WorkerThread", "thread pool (anyio worker, outside the action)"),
    ("run_in_threadpool", "thread pool hop (event-loop side)"),
    ("to_thread", "thread pool hop (event-loop side)"),
    ("fastapi/", "HTTP stack (uvicorn + starlette + fastapi)"),
    ("starlette/", "HTTP stack (uvicorn + starlette + fastapi)"),
    ("uvicorn/", "HTTP stack (uvicorn + starlette + fastapi)"),
]
# Mechanism: a WHOLE_STACK rule anywhere in the stack wins; else the first rule, from the
# leaf up, whose text is in a frame.
WHOLE_STACK: list[tuple[str, str]] = [
    ("_begin (opensop/store/sqlite.py", "sqlite3: BEGIN IMMEDIATE (waits for the write lock)"),
    ("Queue.get (queue.py", "idle worker thread (waiting for work)"),
]
MECHANISMS: list[tuple[str, str]] = [
    ("do_execute ", "sqlite3 driver: execute (C, incl. lock wait)"),
    ("do_executemany ", "sqlite3 driver: executemany (C)"),
    ("do_commit ", "sqlite3 driver: COMMIT (C, incl. fsync)"),
    ("do_rollback ", "sqlite3 driver: ROLLBACK (C)"),
    ("json/", "json encode/decode"),
    ("opensop/store/types.py", "type processing (UTCDateTime, JSON)"),
    ("sqlalchemy/dialects/", "type processing (UTCDateTime, JSON)"),
    ("sqlalchemy/sql/sqltypes.py", "type processing (UTCDateTime, JSON)"),
    ("sqlalchemy/sql/compiler.py", "SQLAlchemy: compile + bind params"),
    ("sqlalchemy/sql/cache_key.py", "SQLAlchemy: cache key"),
    ("sqlalchemy/sql/", "SQLAlchemy: build statements (select/insert/where)"),
    ("sqlalchemy/engine/result.py", "SQLAlchemy: result rows"),
    ("sqlalchemy/engine/cursor.py", "SQLAlchemy: result rows"),
    ("sqlalchemy/pool/", "SQLAlchemy: pool checkout/return"),
    ("sqlalchemy/", "SQLAlchemy: execute/transaction machinery"),
    ("hashlib", "hashing"),
    ("hash_secret", "hashing"),
    ("ulid/", "ULID"),
    ("pydantic", "pydantic"),
    ("opensop/engine/", "engine (pure state machine)"),
    ("opensop/definition/", "definition: defaults, validation, references"),
    ("opensop/api/serialize.py", "response building (serialize)"),
    ("starlette/responses.py", "response rendering (JSONResponse)"),
    ("anyio/", "thread pool / anyio"),
    ("threading.py", "thread pool / anyio"),
    ("queue.py", "thread pool / anyio"),
    ("concurrent/", "thread pool / anyio"),
    ("httptools", "HTTP parsing/writing (uvicorn)"),
    ("uvicorn/", "HTTP parsing/writing (uvicorn)"),
    ("starlette/", "starlette routing/middleware"),
    ("fastapi/", "fastapi routing/middleware"),
    ("asyncio/", "event loop (asyncio/uvloop)"),
    ("uvloop", "event loop (asyncio/uvloop)"),
    ("opensop/store/", "OpenSOP store code (row dicts, mapping)"),
    ("opensop/service.py", "OpenSOP service code"),
    ("opensop/clock.py", "clock"),
    ("opensop/", "OpenSOP (other)"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--view", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="sampled load")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--top", type=int, default=25, help="hottest functions to list")
    parser.add_argument(
        "--out-dir", type=Path, default=VAR_DIR / "profile", help="collapsed stacks go here"
    )
    return parser.parse_args()


def read_stacks(path: Path) -> Iterable[tuple[list[str], int]]:
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def classify(frames: list[str]) -> tuple[str, str]:
    owner = next(
        (name for text, name in OWNERS for frame in frames if text in frame), "event loop / other"
    )
    mechanism = next(
        (name for text, name in WHOLE_STACK for frame in frames if text in frame), None
    ) or next(
        (name for frame in reversed(frames) for text, name in MECHANISMS if text in frame),
        "other: " + (frames[-1].split(" (")[0] if frames else "?"),
    )
    return owner, mechanism


def report(path: Path, requests: int, top: int) -> None:
    owners: Counter[str] = Counter()
    mechanisms: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for frames, count in read_stacks(path):
        owner, mechanism = classify(frames)
        owners[owner] += count
        mechanisms[mechanism] += count
        pairs[owner, mechanism] += count
        leaves[frames[-1]] += count
        total += count
    if not total:
        print("no samples")
        return
    per_request = total / requests if requests else 0.0
    print(f"{total:,} samples, {per_request:.2f} samples per request")

    def table(title: str, counter: Counter[str]) -> None:
        print(f"\n{title:62} {'share':>6}")
        for name, count in counter.most_common():
            print(f"  {name:60} {count / total:6.1%}")

    table("by owner (outermost frame)", owners)
    table("by mechanism (innermost frame)", mechanisms)
    print(f"\n{'owner x mechanism (>= 1 %)':62} {'share':>6}")
    for (owner, mechanism), count in pairs.most_common():
        if count / total >= 0.01:
            print(f"  {owner[:28]:28} | {mechanism[:29]:29} {count / total:6.1%}")
    print(f"\n{'hottest functions (self)':62} {'share':>6}")
    for leaf, count in leaves.most_common(top):
        print(f"  {leaf[:96]:96} {count / total:6.1%}")


def main() -> int:
    args = parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out_dir / f"start-{args.view}-{stamp}.txt"
    flag = "--gil" if args.view == "cpu" else "--idle"
    token = new_token()
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.out_dir))
    print(banner(f"profile_start: {args.view} view of POST start under load"))
    print(machine_line())
    try:
        with (
            terminate_as_exit(),
            Server.opensop(
                folder / "opensop.db",
                token=token,
                synchronous=args.sqlite_synchronous,
                log_dir=folder,
            ) as server,
        ):
            url, headers = server.url(START_PATH), auth_headers(token)
            run_load(url, body=START_BODY, headers=headers, clients=args.clients, seconds=2)
            with py_spy_recording(server.pid, out, rate=args.rate, flags=[flag]):
                cpu_before = cpu_seconds(server.pid)
                load = run_load(
                    url,
                    body=START_BODY,
                    headers=headers,
                    clients=args.clients,
                    seconds=args.seconds,
                )
                cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(load.lines()))
    print(
        f"server CPU    {cpu * 1000 / max(1, load.requests):.2f} ms per request "
        f"({cpu / load.seconds:.0%} of one core)"
    )
    print(f"stacks        {out}")
    report(out, load.requests, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
