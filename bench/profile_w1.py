"""Where a W1 instance's time goes: py-spy samples of ``opensop serve`` under the W1 load.

Starts the server on a fresh SQLite file with ``bench/processes/w1``, runs W1 (start, then
submit the form the start answer shows active) with 1 keep-alive raw client (as
``w1_peer.py`` does), and meanwhile samples the server with ``py-spy record``:

- ``--view cpu`` (default): samples that hold the GIL (``--gil``): the Python work one
  core has to do per instance. Shares are turned into milliseconds per instance;
- ``--view active``: every thread py-spy sees running (``--threads``), so C code that
  released the GIL (SQLite) counts too, and so do some I/O waits (fsync);
- ``--view wall``: every thread, idle ones too (``--idle``): where requests wait.

Besides the samples, the exact CPU time of each server thread over the load is read from
/proc/PID/task (the writer thread, the AnyIO worker threads, the event loop); the gap
between a thread's CPU and its GIL-holding samples is C code run without the GIL
(SQLite's statement execution) plus GIL hand-over and kernel time.

Each sample is charged to an owner (what the work is for: auth, the start's or the
submit's unit in the group-commit writer, the runner woken by the submit, the HTTP stack,
response building ...), to a request (start, submit, runner, or unattributed) and to a
mechanism (the innermost recognisable frame, as in ``profile_start.py``). Raw collapsed
stacks stay in var/bench/profile/ (flamegraph.pl or speedscope read them).

    .venv/bin/python bench/profile_w1.py                     # CPU view, 1 client, 15 s
    .venv/bin/python bench/profile_w1.py --view wall --seconds 10
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import (
    VAR_DIR,
    Server,
    banner,
    machine_line,
    new_token,
    py_spy_executable,
    py_spy_recording,
    source_line,
    terminate_as_exit,
    thread_cpu_times,
)
from profile_start import MECHANISMS, WHOLE_STACK, read_stacks
from w1_peer import PROCESS_DIR, measure_run

# Owner: the first rule whose text is in any frame (rule order decides).
OWNERS: list[tuple[str, str]] = [
    ("Service.authenticate", "auth (token lookup, in the write unit)"),
    ("Service.start.<locals>.insert", "start: write unit (inline or writer thread)"),
    ("Service.submit.<locals>.complete", "submit: write unit (inline or writer thread)"),
    ("Work.claim_jobs", "runner woken by submit: claim_jobs (write unit + hop)"),
    ("Work.next_due_at", "runner woken by submit: next_due_at (read txn + hop)"),
    ("opensop/runtime/runner.py", "runner loop (event-loop side)"),
    ("Service.start", "start use case (before its insert)"),
    ("Service.submit", "submit use case (before its transition)"),
    ("GroupCommitWriter._run_batch", "writer: BEGIN / SAVEPOINT / COMMIT"),
    ("GroupCommitWriter._run_inline", "inline unit: BEGIN / COMMIT"),
    ("GroupCommitWriter._loop", "writer: queue wait"),
    ("GroupCommitWriter.run", "waiting for / handing over to the writer"),
    ("serialize.py", "response building (serialize + JSONResponse)"),
    ("JSONResponse", "response building (serialize + JSONResponse)"),
    ("serialize_response", "response building (fastapi serialize_response)"),
    ("jsonable_encoder", "response building (fastapi serialize_response)"),
    ("read_body", "request body (read)"),
    ("parse_json", "request body (json.loads)"),
    ("json_object", "request body (json.loads)"),
    ("opensop/api/", "route code (other)"),
    ("WorkerThread", "thread pool (anyio worker, outside the action)"),
    ("run_in_threadpool", "thread pool hop (event-loop side)"),
    ("to_thread", "thread pool hop (event-loop side)"),
    ("anyio/", "thread pool hop (event-loop side)"),
    ("fastapi/", "HTTP stack (uvicorn + starlette + fastapi)"),
    ("starlette/", "HTTP stack (uvicorn + starlette + fastapi)"),
    ("uvicorn/", "HTTP stack (uvicorn + starlette + fastapi)"),
]
# Request: which API call (or background task) a sample serves.
REQUESTS: list[tuple[str, str]] = [
    ("Service.start", "start"),
    ("start (opensop/api/routes_instances.py", "start"),
    ("Service.submit", "submit"),
    ("submit (opensop/api/routes_instances.py", "submit"),
    ("Work.claim_jobs", "runner wake-up (after submit)"),
    ("Work.next_due_at", "runner wake-up (after submit)"),
    ("opensop/runtime/runner.py", "runner wake-up (after submit)"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--view",
        choices=["cpu", "active", "wall"],
        default="cpu",
        help="cpu: GIL-holding samples (Python work); active: every thread py-spy sees "
        "running (C code without the GIL too, but also some I/O waits); wall: all threads",
    )
    parser.add_argument("--clients", type=int, default=1, help="concurrent W1 clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="sampled load")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured instances first")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--top", type=int, default=30, help="hottest functions to list")
    parser.add_argument(
        "--out-dir", type=Path, default=VAR_DIR / "profile", help="collapsed stacks go here"
    )
    return parser.parse_args()


def classify(frames: list[str]) -> tuple[str, str, str]:
    owner = next(
        (name for text, name in OWNERS for frame in frames if text in frame),
        "event loop / HTTP parsing (other)",
    )
    request = next(
        (name for text, name in REQUESTS for frame in frames if text in frame), "unattributed"
    )
    mechanism = next(
        (name for text, name in WHOLE_STACK for frame in frames if text in frame), None
    ) or next(
        (name for frame in reversed(frames) for text, name in MECHANISMS if text in frame),
        "other: " + (frames[-1].split(" (")[0] if frames else "?"),
    )
    return owner, request, mechanism


def report(path: Path, instances: int, rate: int, server_cpu: float, top: int, view: str) -> None:
    owners: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    mechanisms: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for frames, count in read_stacks(path):
        if (frames and frames[0].startswith("thread ")) or (
            frames and frames[0].startswith("process ")
        ):
            frames = frames[1:]  # --threads / --subprocesses prefixes
        owner, request, mechanism = classify(frames)
        owners[owner] += count
        requests[request] += count
        mechanisms[mechanism] += count
        pairs[owner, mechanism] += count
        leaves[frames[-1] if frames else "?"] += count
        total += count
    if not total:
        print("no samples")
        return
    sampled_ms = total / rate * 1000 / max(1, instances)  # per instance
    unit = {"cpu": "GIL-held", "active": "active-thread", "wall": "thread"}[view]
    print(
        f"{total:,} samples at {rate}/s = {sampled_ms:.2f} ms of {unit} time per instance "
        f"(server CPU measured from /proc: {server_cpu * 1000 / max(1, instances):.2f} ms)"
    )

    def table(title: str, counter: Counter[str]) -> None:
        print(f"\n{title:64} {'share':>6} {'ms/inst':>8}")
        for name, count in counter.most_common():
            share = count / total
            print(f"  {name:62} {share:6.1%} {share * sampled_ms:8.3f}")

    table("by owner (what the work is for)", owners)
    table("by request", requests)
    table("by mechanism (innermost frame)", mechanisms)
    print(f"\n{'owner x mechanism (>= 1 %)':64} {'share':>6} {'ms/inst':>8}")
    for (owner, mechanism), count in pairs.most_common():
        share = count / total
        if share >= 0.01:
            print(f"  {owner[:31]:31} | {mechanism[:29]:29} {share:6.1%} {share * sampled_ms:8.3f}")
    print(f"\n{'hottest functions (self)':96} {'share':>6}")
    for leaf, count in leaves.most_common(top):
        print(f"  {leaf[:94]:94} {count / total:6.1%}")


def thread_names(spy: str, pid: int) -> dict[int, str]:
    """Python thread names by OS thread id, from ``py-spy dump`` (others: /proc comm)."""
    names: dict[int, str] = {}
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            names[int(task.name)] = (task / "comm").read_text().strip()
    except OSError:
        pass
    done = subprocess.run(
        [spy, "dump", "--pid", str(pid), "--nonblocking"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    for match in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', done.stdout, re.MULTILINE):
        names[int(match.group(1))] = match.group(2)
    return names


def thread_report(
    before: dict[int, tuple[float, float]],
    after: dict[int, tuple[float, float]],
    names: dict[int, str],
    instances: int,
) -> None:
    """CPU per instance of each kind of thread (exact, from /proc, not sampled)."""
    kinds: dict[str, list[float]] = {}
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0.0, 0.0))
        entry = kinds.setdefault(names.get(tid, f"thread {tid}"), [0.0, 0.0, 0])
        entry[0] += user - user0
        entry[1] += system - system0
        entry[2] += 1
    print(
        f"\n{'server CPU ms per instance, by thread (/proc/PID/task)':50} {'threads':>7} "
        f"{'user':>7} {'system':>7}"
    )
    for name, (user, system, count) in sorted(kinds.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
        per = 1000 / max(1, instances)
        print(f"  {name:48} {int(count):7d} {user * per:7.3f} {system * per:7.3f}")


def main() -> int:
    args = parse_args()
    spy = py_spy_executable()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out_dir / f"w1-{args.view}-{stamp}.txt"
    flags = {"cpu": ["--gil"], "active": ["--threads"], "wall": ["--idle", "--threads"]}[args.view]
    token = new_token()
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.out_dir))
    print(banner(f"profile_w1: {args.view} view of W1 (start + submit) under load"))
    print(machine_line())
    print(source_line())
    try:
        with (
            terminate_as_exit(),
            Server.opensop(
                folder / "opensop.db",
                token=token,
                synchronous=args.sqlite_synchronous,
                log_dir=folder,
                load_dir=PROCESS_DIR,
            ) as server,
        ):
            measure_run("warm-up", server, token, "raw", 1, args.warmup, 120)
            with py_spy_recording(server.pid, out, rate=args.rate, flags=flags):
                threads_before = thread_cpu_times(server.pid)
                run = measure_run(
                    "sampled", server, token, "raw", args.clients, 10**7, args.seconds
                )
                threads_after = thread_cpu_times(server.pid)
            names = thread_names(spy, server.pid)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"load          {run.instances} W1 instances in {run.seconds:.1f} s = {run.rate:.1f}/s "
        f"({args.clients} raw client(s), under py-spy); errors {len(run.errors)}"
    )
    print(
        f"server CPU    {run.per_instance_ms(run.server_cpu):.2f} ms per instance "
        f"({run.per_instance_ms(run.server_user):.2f} user + "
        f"{run.per_instance_ms(run.server_sys):.2f} system; "
        f"{run.server_cpu / run.seconds:.0%} of one core)"
    )
    print(f"stacks        {out}")
    thread_report(threads_before, threads_after, names, run.instances)
    report(out, run.instances, args.rate, run.server_cpu, args.top, args.view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
