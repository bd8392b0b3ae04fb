"""External workers: step transitions/s when separate worker processes claim and submit.

Starts ``opensop serve`` on a fresh SQLite file with ``bench/processes/workers``
(``worker-chain``: five automated steps without ``run`` or ``value``, each waiting for an
external worker), starts ``--instances`` instances (bench/loadgen.py, 4 clients), checks
they all wait at step 1, then runs ``--workers`` worker processes (bench/external_worker.py,
separate OS processes, one keep-alive connection each) that loop claim(limit=``--limit``)
+ submit until nothing is left. Every instance needs 5 completions, so 1,000 instances
make 5,000 step transitions.

Reports transitions/s = completions / (last submit - first claim, one monotonic clock for
all processes), p50/p99 of the claim and submit calls as each worker saw them, and the CPU
per transition of the server and of the workers.

    .venv/bin/python bench/workers.py                      # 1,000 instances, 2 workers
    .venv/bin/python bench/workers.py --instances 200 --workers 4 --limit 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    VAR_DIR,
    Server,
    auth_headers,
    banner,
    cpu_times,
    instance_count,
    machine_line,
    new_token,
    percentile,
    py_spy_recording,
    rss_mib,
    run_load,
    source_line,
    terminate_as_exit,
)

PROCESS_DIR = BENCH_DIR / "processes" / "workers"
PROCESS = "worker-chain"
STEPS = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--limit", type=int, default=10, help="steps per claim")
    parser.add_argument(
        "--server-workers", type=int, default=4, help="opensop serve --workers (job runner)"
    )
    parser.add_argument("--max-seconds", type=float, default=600.0, help="hard bound per worker")
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument(
        "--work-dir", type=Path, default=VAR_DIR / "workers", help="SQLite file and logs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="OUT",
        help="also sample the server with py-spy (GIL view) into OUT while the workers run",
    )
    return parser.parse_args()


def run_workers(server: Server, token: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    argv = [
        sys.executable,
        str(BENCH_DIR / "external_worker.py"),
        "--port",
        str(server.port),
        "--limit",
        str(args.limit),
        "--process",
        PROCESS,
        "--max-seconds",
        f"{args.max_seconds:g}",
        "--json",
    ]
    env = {**os.environ, "OPENSOP_TOKEN": token}
    workers = [
        subprocess.Popen(
            [*argv, "--name", f"bench-worker-{number + 1}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(args.workers)
    ]
    tallies = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=args.max_seconds + 30)
            lines = out.strip().splitlines()
            if not lines:
                raise RuntimeError(f"a worker printed nothing (exit {worker.returncode}): {err}")
            tallies.append(json.loads(lines[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
    return tallies


def main() -> int:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    token = new_token()
    print(banner("workers: external worker processes, claim + submit"))
    print(machine_line())
    print(source_line())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"load: {args.instances} instances x {STEPS} worker steps; {args.workers} worker "
        f"processes, claim limit {args.limit}; server --workers {args.server_workers}; "
        f"SQLite synchronous={args.sqlite_synchronous}"
    )
    try:
        with (
            terminate_as_exit(),
            Server.opensop(
                folder / "opensop.db",
                token=token,
                synchronous=args.sqlite_synchronous,
                log_dir=folder,
                load_dir=PROCESS_DIR,
                workers=args.server_workers,
            ) as server,
        ):
            starts = run_load(
                server.url(f"/sop/{PROCESS}/start"),
                body={"inputs": {"n": 0}},
                headers=auth_headers(token),
                clients=4,
                total=args.instances,
                expect=201,
            )
            waiting = instance_count(server, token, f"&process={PROCESS}&state=running")
            if starts.errors or waiting != args.instances:
                raise SystemExit(
                    f"{waiting} instances waiting after {starts.requests} starts "
                    f"({starts.errors} errors); expected {args.instances}"
                )
            spying = (
                py_spy_recording(server.pid, args.py_spy)
                if args.py_spy
                else contextlib.nullcontext()
            )
            with spying:
                user0, sys0 = cpu_times(server.pid)
                tallies = run_workers(server, token, args)
                user1, sys1 = cpu_times(server.pid)
            completed = instance_count(server, token, f"&process={PROCESS}&state=completed")
            rss = rss_mib(server.pid)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    submitted = sum(t["submitted"] for t in tallies)
    firsts = [t["first_claim"] for t in tallies if t["first_claim"] is not None]
    lasts = [t["last_submit"] for t in tallies if t["last_submit"] is not None]
    seconds = max(lasts) - min(firsts) if firsts and lasts else 0.0
    claims = sorted(ms for t in tallies for ms in t["claim_ms"])
    submits = sorted(ms for t in tallies for ms in t["submit_ms"])
    errors = [e for t in tallies for e in t["errors"]]
    rate = submitted / seconds if seconds else 0.0
    server_cpu = (user1 - user0) + (sys1 - sys0)
    worker_cpu = sum(t["cpu_seconds"] for t in tallies)
    expected = args.instances * STEPS
    print(banner("result"))
    print(
        f"starts         {starts.requests} in {starts.seconds:.1f} s ({starts.rps:,.0f}/s, "
        f"4 clients, not part of the figure below)"
    )
    print(
        f"transitions    {submitted} of {expected} step completions in {seconds:.2f} s "
        f"= {rate:,.0f} transitions/s ({rate / STEPS:,.0f} instances/s); "
        f"{completed} of {args.instances} instances completed"
    )
    print(
        f"claim ms       p50 {percentile(claims, 50):.2f}  p99 {percentile(claims, 99):.2f}  "
        f"max {claims[-1] if claims else float('nan'):.2f}  ({len(claims)} claims, "
        f"{sum(t['empty_claims'] for t in tallies)} empty, limit {args.limit})"
    )
    print(
        f"submit ms      p50 {percentile(submits, 50):.2f}  p99 {percentile(submits, 99):.2f}  "
        f"max {submits[-1] if submits else float('nan'):.2f}  ({len(submits)} submits)"
    )
    for tally in tallies:
        print(
            f"  {tally['name']}: {tally['submitted']} submitted, {tally['claims']} claims, "
            f"{tally['cpu_seconds'] * 1000 / max(1, tally['submitted']):.2f} ms CPU per step"
        )
    print(
        f"CPU            server {server_cpu * 1000 / max(1, submitted):.2f} ms per transition "
        f"({(user1 - user0) * 1000 / max(1, submitted):.2f} user + "
        f"{(sys1 - sys0) * 1000 / max(1, submitted):.2f} system; "
        f"{server_cpu / seconds if seconds else 0:.0%} of one core); workers "
        f"{worker_cpu * 1000 / max(1, submitted):.2f} ms per transition; server RSS {rss:.0f} MiB"
    )
    print(f"errors         {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    return 0 if submitted == expected and completed == args.instances and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
