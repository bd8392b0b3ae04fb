"""Idle CPU: what a server costs while 1,000 instances wait on people and timers.

Starts ``opensop serve --workers 4`` on a fresh SQLite file with ``bench/processes/idle``,
parks ``--forms`` instances on a form (``waiting_for_input``) and ``--timers`` on a
``wait: {seconds: 3600}`` timer (``waiting_for_timer``; each queues a job due in an hour),
checks they are all waiting, lets the server settle for ``--settle`` seconds, then reads
the server's CPU time (utime + stime from /proc/PID/stat, all threads) over ``--seconds``
of idleness: no request is sent meanwhile. Also counts the context switches of all its
threads (wake-ups) over the same window. Target: < 1 % of one core.

    .venv/bin/python bench/idle_cpu.py                  # 500 + 500 parked, 60 s
    .venv/bin/python bench/idle_cpu.py --seconds 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

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
    rss_mib,
    run_load,
    source_line,
    terminate_as_exit,
)

PROCESS_DIR = BENCH_DIR / "processes" / "idle"
TARGET_SHARE = 0.01  # of one core


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured idleness")
    parser.add_argument("--forms", type=int, default=500, help="instances parked on a form")
    parser.add_argument("--timers", type=int, default=500, help="instances parked on a timer")
    parser.add_argument("--workers", type=int, default=4, help="opensop serve --workers")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument(
        "--work-dir", type=Path, default=VAR_DIR / "idle_cpu", help="SQLite file and logs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    return parser.parse_args()


def context_switches(pid: int) -> dict[int, tuple[int, int]]:
    """(voluntary, involuntary) context switches of each live thread, by thread id."""
    counts: dict[int, tuple[int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        counts[int(task.name)] = (
            int(fields["voluntary_ctxt_switches"]),
            int(fields["nonvoluntary_ctxt_switches"]),
        )
    return counts


def switches_between(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> tuple[int, int, int]:
    """Switches of the threads alive at the end (threads that ended are not counted:
    idle pool threads exit after a while), and how many threads ended."""
    voluntary = sum(v - before.get(tid, (0, 0))[0] for tid, (v, _) in after.items())
    involuntary = sum(i - before.get(tid, (0, 0))[1] for tid, (_, i) in after.items())
    return voluntary, involuntary, len(set(before) - set(after))


def park(server: Server, token: str, process: str, count: int) -> None:
    if count <= 0:
        return
    result = run_load(
        server.url(f"/sop/{process}/start"),
        body={"inputs": {}},
        headers=auth_headers(token),
        clients=4,
        total=count,
        expect=201,
    )
    if result.errors:
        raise SystemExit(f"parking {process}: {result.errors} errors ({result.statuses})")


def main() -> int:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    token = new_token()
    print(banner("idle_cpu: server CPU with instances parked on forms and timers"))
    print(machine_line())
    print(source_line())
    print(
        f"parked: {args.forms} on a form + {args.timers} on a 3600 s timer; server --workers "
        f"{args.workers}; {args.settle:g} s settle, then {args.seconds:g} s measured"
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
                workers=args.workers,
            ) as server,
        ):
            park(server, token, "idle-form", args.forms)
            park(server, token, "idle-timer", args.timers)
            forms = instance_count(server, token, "&process=idle-form&state=running")
            timers = instance_count(server, token, "&process=idle-timer&state=running")
            if (forms, timers) != (args.forms, args.timers):
                raise SystemExit(f"parked {forms} forms and {timers} timers, not all of them")
            time.sleep(args.settle)
            user0, sys0 = cpu_times(server.pid)
            switches0 = context_switches(server.pid)
            wall0 = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - wall0
            user1, sys1 = cpu_times(server.pid)
            switches1 = context_switches(server.pid)
            threads = len(list(Path(f"/proc/{server.pid}/task").iterdir()))
            rss = rss_mib(server.pid)
            still = instance_count(server, token, "&state=running")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    cpu = (user1 - user0) + (sys1 - sys0)
    share = cpu / wall
    voluntary, involuntary, ended = switches_between(switches0, switches1)
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    print(banner("result"))
    print(
        f"idle CPU       {cpu * 1000:.0f} ms over {wall:.1f} s = {share:.2%} of one core "
        f"({(user1 - user0) * 1000:.0f} ms user + {(sys1 - sys0) * 1000:.0f} ms system; "
        f"/proc resolution {tick_ms:.0f} ms)"
    )
    print(
        f"wake-ups       {voluntary / wall:.1f} voluntary + {involuntary / wall:.1f} "
        f"involuntary context switches/s over the {threads} threads alive at the end "
        f"({ended} ended during the window)"
    )
    print(f"server         RSS {rss:.0f} MiB; {still} instances still running (all parked)")
    ok = share < TARGET_SHARE
    print(banner("verdict"))
    print(
        f"  [{'PASS' if ok else 'FAIL'}] idle CPU < {TARGET_SHARE:.0%} of one core    {share:.2%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
