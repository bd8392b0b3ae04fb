"""Script steps: a 5-step chain of trivial Python scripts, against the process-spawn bound.

The process (``bench/processes/scripts/scripts-chain.sop.yaml``) runs ``steps/count.py``
five times in a row (JSON on stdin, ``{"n": n + 1}`` on stdout), through the server's job
runner (``opensop serve --workers W``). ``--instances`` instances are started with
``--concurrency`` of them in flight at a time (one client starts a new one whenever the
count of running instances, polled every ``--poll-ms``, drops below it).

Throughput and latencies come from the server's own timestamps (``GET`` of each instance
at the end): instances/s = instances / (last completed_at - first started_at); per-step
latency = a step's completed_at - started_at (waiting for a runner slot + spawning the
script + running it + applying its result).

Measured in the same run, before the server starts: one process spawn of
``python -c pass`` with the server's interpreter (sequential, ``--spawns`` of them, the
script runner's kind of clean environment), and the bound it sets:
workers x 1000 / spawn_ms / 5 steps instances/s.

    .venv/bin/python bench/scripts_chain.py                 # 200 instances, ~1 min
    .venv/bin/python bench/scripts_chain.py --workers 8 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from common import (
    BENCH_DIR,
    HOST,
    VAR_DIR,
    Server,
    banner,
    cpu_times,
    machine_line,
    new_token,
    percentile,
    py_spy_recording,
    rss_mib,
    source_line,
    terminate_as_exit,
)
from keepalive import RawConnection, run_async

PROCESS_DIR = BENCH_DIR / "processes" / "scripts"
PROCESS = "scripts-chain"
STEPS = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8, help="instances in flight")
    parser.add_argument("--workers", type=int, default=4, help="opensop serve --workers")
    parser.add_argument("--spawns", type=int, default=200, help="`python -c pass` spawns")
    parser.add_argument("--warmup", type=int, default=4, help="unmeasured instances first")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="running-count poll")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="hard time bound")
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument(
        "--work-dir", type=Path, default=VAR_DIR / "scripts_chain", help="SQLite file and logs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="OUT",
        help="also sample the server with py-spy (GIL view) into OUT during the measured load",
    )
    return parser.parse_args()


# -- the spawn bound ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    wall_ms: float
    cpu_ms: float  # the child's own user + system CPU


def spawn_cost(count: int) -> Spawn:
    """Mean cost of ``python -c pass`` with this interpreter, one after another."""
    home = tempfile.mkdtemp(prefix="opensop-spawn-")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "HOME": home,
        "TMPDIR": home,
    }
    argv = [sys.executable, "-c", "pass"]
    try:
        subprocess.run(argv, env=env, check=True, timeout=30, stdin=subprocess.DEVNULL)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        for _ in range(count):
            subprocess.run(
                argv,
                env=env,
                check=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return Spawn(wall * 1000 / count, cpu * 1000 / count)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- the load ----------------------------------------------------------------------------


async def running_count(conn: RawConnection) -> int:
    # The total comes in X-Total-Count; the raw client keeps only the body, so ask for
    # up to 200 ids and count them (the concurrency is far below that).
    status, body = await conn.request(
        "GET", f"/sop/instances?process={PROCESS}&state=running&limit=200"
    )
    if status != 200:
        raise RuntimeError(f"listing instances answered {status}: {body[:200]!r}")
    return len(json.loads(body))


async def start_one(conn: RawConnection, number: int) -> str:
    body = json.dumps({"inputs": {"n": 0}, "metadata": {"number": number}}).encode()
    status, answer = await conn.request("POST", f"/sop/{PROCESS}/start", body)
    if status != 201:
        raise RuntimeError(f"start answered {status}: {answer[:200]!r}")
    instance_id: str = json.loads(answer)["id"]
    return instance_id


async def keep_in_flight(
    port: int, token: str, total: int, concurrency: int, poll: float, deadline: float
) -> list[str]:
    """Start ``total`` instances, never more than ``concurrency`` running at once."""
    ids: list[str] = []
    async with RawConnection(HOST, port, token) as conn:
        while time.monotonic() < deadline:
            running = await running_count(conn)
            if len(ids) >= total and running == 0:
                return ids
            for _ in range(min(concurrency - running, total - len(ids))):
                ids.append(await start_one(conn, len(ids)))
            await asyncio.sleep(poll)
    raise RuntimeError(f"not done within the time bound: {len(ids)} of {total} started")


async def fetch_all(port: int, token: str, ids: list[str]) -> list[dict[str, object]]:
    found = []
    async with RawConnection(HOST, port, token) as conn:
        for instance_id in ids:
            status, body = await conn.request("GET", f"/sop/{PROCESS}/{instance_id}")
            if status != 200:
                raise RuntimeError(f"GET instance answered {status}: {body[:200]!r}")
            found.append(json.loads(body))
    return found


def when(text: object) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


@dataclass(frozen=True)
class Outcome:
    instances: int
    completed: int
    wrong: int  # completed but outputs.n != 5
    seconds: float  # first started_at -> last completed_at (server clock)
    instance_ms: list[float]
    step_ms: list[float]
    gap_ms: list[float]  # a step's start -> its script's job being picked up is inside
    server_cpu: float
    children_cpu: float

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def children_cpu_seconds(pid: int) -> float:
    """CPU of the children a process has waited for (cutime + cstime): its scripts."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def analyse(found: list[dict[str, object]], server_cpu: float, children: float) -> Outcome:
    instance_ms: list[float] = []
    step_ms: list[float] = []
    completed = wrong = 0
    firsts, lasts = [], []
    for instance in found:
        if instance["state"] != "completed":
            continue
        completed += 1
        outputs = instance.get("outputs") or {}
        if not isinstance(outputs, dict) or outputs.get("n") != STEPS:
            wrong += 1
        begin, end = when(instance["started_at"]), when(instance["completed_at"])
        firsts.append(begin)
        lasts.append(end)
        instance_ms.append((end - begin).total_seconds() * 1000)
        for step in instance["steps"]:  # type: ignore[attr-defined]
            step_ms.append(
                (when(step["completed_at"]) - when(step["started_at"])).total_seconds() * 1000
            )
    seconds = (max(lasts) - min(firsts)).total_seconds() if firsts else 0.0
    return Outcome(
        len(found),
        completed,
        wrong,
        seconds,
        sorted(instance_ms),
        sorted(step_ms),
        [],
        server_cpu,
        children,
    )


def main() -> int:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    token = new_token()
    print(banner("scripts_chain: 5 trivial Python script steps per instance"))
    print(machine_line())
    print(source_line())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"load: {args.instances} instances, {args.concurrency} in flight, server --workers "
        f"{args.workers}; {args.warmup} warm-up instances first; SQLite synchronous="
        f"{args.sqlite_synchronous}"
    )
    deadline = time.monotonic() + args.max_seconds
    poll = args.poll_ms / 1000
    try:
        with terminate_as_exit():
            spawn = spawn_cost(args.spawns)
            with Server.opensop(
                folder / "opensop.db",
                token=token,
                synchronous=args.sqlite_synchronous,
                log_dir=folder,
                load_dir=PROCESS_DIR,
                workers=args.workers,
            ) as server:
                run_async(
                    keep_in_flight(
                        server.port, token, args.warmup, args.concurrency, poll, deadline
                    )
                )
                spying = (
                    py_spy_recording(server.pid, args.py_spy)
                    if args.py_spy
                    else contextlib.nullcontext()
                )
                with spying:
                    (user0, sys0), children0 = (
                        cpu_times(server.pid),
                        children_cpu_seconds(server.pid),
                    )
                    wall0 = time.perf_counter()
                    ids = run_async(
                        keep_in_flight(
                            server.port, token, args.instances, args.concurrency, poll, deadline
                        )
                    )
                    wall = time.perf_counter() - wall0
                    user1, sys1 = cpu_times(server.pid)
                    children = children_cpu_seconds(server.pid) - children0
                found = run_async(fetch_all(server.port, token, ids))
                rss = rss_mib(server.pid)
                log_tail = server.log_tail(5)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    user, system = user1 - user0, sys1 - sys0
    cpu = user + system
    outcome = analyse(found, cpu, children)
    bound = args.workers * 1000 / spawn.wall_ms / STEPS
    print(banner("result"))
    print(
        f"instances      {outcome.completed} of {outcome.instances} completed "
        f"({outcome.wrong} with outputs.n != {STEPS}); client wall {wall:.1f} s"
    )
    print(
        f"throughput     {outcome.rate:.1f} instances/s = {outcome.rate * STEPS:.1f} script "
        f"steps/s (first start -> last completion, server clock: {outcome.seconds:.1f} s)"
    )
    print(
        f"instance ms    p50 {percentile(outcome.instance_ms, 50):.0f}  "
        f"p99 {percentile(outcome.instance_ms, 99):.0f}  (start -> completed, 5 steps)"
    )
    print(
        f"step ms        p50 {percentile(outcome.step_ms, 50):.1f}  "
        f"p90 {percentile(outcome.step_ms, 90):.1f}  p99 {percentile(outcome.step_ms, 99):.1f}"
        f"  max {outcome.step_ms[-1] if outcome.step_ms else float('nan'):.1f}  "
        "(active -> completed: runner slot wait + spawn + script + apply)"
    )
    steps_done = max(1, outcome.completed * STEPS)
    print(
        f"CPU            server {cpu * 1000 / steps_done:.2f} ms per step "
        f"({user * 1000 / steps_done:.2f} user + {system * 1000 / steps_done:.2f} system; "
        f"{cpu / wall:.0%} of one core); scripts {children * 1000 / steps_done:.2f} ms per "
        f"step (reaped children); together {(cpu + children) / wall:.0%} of one core; "
        f"server RSS {rss:.0f} MiB"
    )
    print(
        f"spawn          python -c pass: {spawn.wall_ms:.1f} ms wall, {spawn.cpu_ms:.1f} ms CPU"
        f" (child) mean over {args.spawns} sequential spawns ({sys.executable})"
    )
    print(
        f"bound          {args.workers} workers x 1000 / {spawn.wall_ms:.1f} ms / {STEPS} steps "
        f"= {bound:.1f} instances/s"
    )
    print(f"ratio          ours / bound = {outcome.rate / bound:.2f}")
    cores = os.cpu_count() or 1
    per_step_cpu = (cpu + children) * 1000 / steps_done
    cpu_bound = cores * 1000 / per_step_cpu / STEPS
    print(
        f"CPU bound      {cores} cores x 1000 / {per_step_cpu:.1f} ms CPU per step (server + "
        f"script, as measured) / {STEPS} = {cpu_bound:.1f} instances/s; ours / that = "
        f"{outcome.rate / cpu_bound:.2f}"
    )
    if outcome.completed != outcome.instances or outcome.wrong:
        print("server log tail:\n" + log_tail)
    return 0 if outcome.completed == outcome.instances and not outcome.wrong else 1


if __name__ == "__main__":
    sys.exit(main())
