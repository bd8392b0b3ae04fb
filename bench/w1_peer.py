"""W1, the peer benchmark: value step -> form -> value step, start to completed over HTTP.

The process (``bench/processes/w1/w1-peer.sop.yaml``) has three steps: an automated step
with only ``value:`` outputs, a form, and another value step. A client starts an instance
(``POST /sop/w1-peer/start``); the start answer already shows the form active (it is
checked, never polled for), so the client submits it at once
(``POST /sop/w1-peer/{id}/steps/review/submit``) and the answer shows the instance
completed (checked too). Per-instance latency is start -> completed: both round trips.

Runs, per ``synchronous`` level (FULL, then NORMAL), on a fresh SQLite file:
  1. the raw sqlite3 floor with the 2 transactions per instance that OpenSOP commits
     (bench/sqlite_floor.py), in this process, no HTTP;
  2. ``--rounds`` rounds of: the raw sqlite3 floor (4 committed transactions per
     instance, the peers' floor), then ``--instances / --rounds`` instances back to back
     by 1 keep-alive client. The shared VM's speed and fsync latency drift by tens of
     percent within a minute; interleaving short pieces exposes both measurements to the
     same drift. Each side's rate is its instances over its seconds, over all rounds;
  3. ``--clients`` concurrent keep-alive clients, ``--each`` instances EACH;
  4. the 2-transaction floor again.
The client is the cheaper of a raw asyncio HTTP/1.1 client and httpx on one keep-alive
connection, chosen by measuring both (``--client auto``), since it competes with the
server for the cores. The peers' published figures are printed for context, not measured.

    .venv/bin/python bench/w1_peer.py                           # FULL and NORMAL, ~2 min
    .venv/bin/python bench/w1_peer.py --sqlite-synchronous FULL --client raw
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    BENCH_DIR,
    HOST,
    VAR_DIR,
    Server,
    banner,
    cpu_times,
    instance_count,
    machine_line,
    new_token,
    percentile,
    source_line,
    terminate_as_exit,
)
from keepalive import BLOCKING_KINDS, CLIENT_KINDS, Connection, HttpError, connect, run_async
from sqlite_floor import Floor
from sqlite_floor import measure as measure_floor

PROCESS_DIR = BENCH_DIR / "processes" / "w1"
PROCESS = "w1-peer"
FORM_STEP = "review"
START_BODY = json.dumps({"inputs": {"who": "Ada Lovelace"}}).encode()
SUBMIT_BODY = json.dumps({"outputs": {"approved": True, "note": "looks fine"}}).encode()

TARGET_RATE = 250.0  # instances/s over HTTP, 1 client, synchronous=FULL
TARGET_FLOOR_FACTOR = 3.0  # within 3x of the raw sqlite3 floor (4 txns/instance)
MAX_ERRORS = 10  # per run; a run stops early past this many failed instances

PEERS = [
    "SpiffWorkflow 3.2 + SQLite ≈ 230/s",
    "DBOS 3.4 ≈ 35/s SQLite / ≈ 32/s PostgreSQL",
    "Prefect 3.9 ≈ 0.8/s",
    "raw sqlite3 floor on that machine class ≈ 740/s",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--instances", type=int, default=2000, help="instances back to back by 1 client"
    )
    parser.add_argument("--clients", type=int, default=2, help="clients of the concurrent run")
    parser.add_argument(
        "--each", type=int, default=1000, help="instances EACH concurrent client runs"
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="unmeasured instances before the runs"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="floor / 1-client pieces, interleaved"
    )
    parser.add_argument(
        "--client",
        choices=["auto", *CLIENT_KINDS],
        default="auto",
        help="auto: measure both on the first server and keep the cheaper (client CPU)",
    )
    parser.add_argument(
        "--calibrate", type=int, default=300, help="instances per client kind for --client auto"
    )
    parser.add_argument(
        "--sqlite-synchronous",
        nargs="+",
        choices=["FULL", "NORMAL"],
        default=["FULL", "NORMAL"],
        help="one server (and floor) per level, in this order",
    )
    parser.add_argument(
        "--floor-instances", type=int, default=2000, help="instances per floor measurement"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=300.0, help="hard time bound of each client run"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=VAR_DIR / "w1_peer",
        help="where the SQLite files and server logs go",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    return parser.parse_args()


# -- the client --------------------------------------------------------------------------


@dataclass
class Tally:
    totals: list[float] = field(default_factory=list)  # ms, start sent -> completed read
    starts: list[float] = field(default_factory=list)  # ms, the start round trip
    submits: list[float] = field(default_factory=list)  # ms, the submit round trip
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    label: str
    client: str
    clients: int
    instances: int
    seconds: float
    client_cpu: float  # seconds of this process's CPU during the run
    server_user: float  # seconds of the server's user CPU during the run
    server_sys: float  # seconds of the server's system (kernel) CPU during the run
    totals: list[float]
    starts: list[float]
    submits: list[float]
    errors: list[str]

    @property
    def rate(self) -> float:
        return self.instances / self.seconds if self.seconds else 0.0

    @property
    def server_cpu(self) -> float:
        return self.server_user + self.server_sys

    def ms(self, values: list[float], pct: float) -> float:
        return percentile(values, pct)

    def per_instance_ms(self, cpu: float) -> float:
        return cpu * 1000 / self.instances if self.instances else 0.0


def merged(label: str, pieces: list[Run]) -> Run:
    """One run made of pieces measured apart (the interleaved rounds)."""
    return Run(
        label=label,
        client=pieces[0].client,
        clients=pieces[0].clients,
        instances=sum(p.instances for p in pieces),
        seconds=sum(p.seconds for p in pieces),
        client_cpu=sum(p.client_cpu for p in pieces),
        server_user=sum(p.server_user for p in pieces),
        server_sys=sum(p.server_sys for p in pieces),
        totals=sorted(t for p in pieces for t in p.totals),
        starts=sorted(t for p in pieces for t in p.starts),
        submits=sorted(t for p in pieces for t in p.submits),
        errors=[e for p in pieces for e in p.errors],
    )


async def one_instance(conn: Connection, tally: Tally) -> bool:
    """Start, check the form is active in the answer, submit, check completed."""
    started = time.perf_counter()
    status, body = await conn.request("POST", f"/sop/{PROCESS}/start", START_BODY)
    if status != 201:
        tally.errors.append(f"start answered {status}: {body[:200]!r}")
        return False
    instance = json.loads(body)
    current = instance.get("current_step") or {}
    if current.get("id") != FORM_STEP or current.get("sub_state") != "waiting_for_input":
        tally.errors.append(f"the start answer does not show the form active: {current!r}")
        return False
    sent_submit = time.perf_counter()
    path = f"/sop/{PROCESS}/{instance['id']}/steps/{FORM_STEP}/submit"
    status, body = await conn.request("POST", path, SUBMIT_BODY)
    done = time.perf_counter()
    if status != 200:
        tally.errors.append(f"submit answered {status}: {body[:200]!r}")
        return False
    state = json.loads(body).get("instance", {}).get("state")
    if state != "completed":
        tally.errors.append(f"the instance is {state!r} after the submit, not completed")
        return False
    tally.totals.append((done - started) * 1000)
    tally.starts.append((sent_submit - started) * 1000)
    tally.submits.append((done - sent_submit) * 1000)
    return True


async def client_loop(
    kind: str, port: int, token: str, count: int, deadline: float, tally: Tally
) -> None:
    conn = connect(kind, HOST, port, token)
    try:
        done = 0
        while done < count and time.monotonic() < deadline and len(tally.errors) <= MAX_ERRORS:
            try:
                if await one_instance(conn, tally):
                    done += 1
            except HttpError as error:
                tally.errors.append(str(error))
    finally:
        await conn.close()


async def drive(
    kind: str, port: int, token: str, clients: int, each: int, max_seconds: float
) -> tuple[Tally, float]:
    tally = Tally()
    deadline = time.monotonic() + max_seconds
    started = time.perf_counter()
    if kind in BLOCKING_KINDS:  # one thread (and event loop) per client
        await asyncio.gather(
            *(
                asyncio.to_thread(run_async, client_loop(kind, port, token, each, deadline, tally))
                for _ in range(clients)
            )
        )
    else:
        await asyncio.gather(
            *(client_loop(kind, port, token, each, deadline, tally) for _ in range(clients))
        )
    return tally, time.perf_counter() - started


def measure_run(
    label: str, server: Server, token: str, kind: str, clients: int, each: int, max_seconds: float
) -> Run:
    user_before, sys_before = cpu_times(server.pid)
    client_before = time.process_time()
    tally, seconds = run_async(drive(kind, server.port, token, clients, each, max_seconds))
    user_after, sys_after = cpu_times(server.pid)
    return Run(
        label=label,
        client=kind,
        clients=clients,
        instances=len(tally.totals),
        seconds=seconds,
        client_cpu=time.process_time() - client_before,
        server_user=user_after - user_before,
        server_sys=sys_after - sys_before,
        totals=sorted(tally.totals),
        starts=sorted(tally.starts),
        submits=sorted(tally.submits),
        errors=tally.errors,
    )


# -- the report --------------------------------------------------------------------------

HEADER = (
    f"{'run':22} {'inst':>5} {'inst/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'start p50':>9} {'submit p50':>10} {'srv CPU':>8} {'cli CPU':>8} {'err':>4}"
)


def run_row(run: Run) -> str:
    return (
        f"{run.label:22} {run.instances:5d} {run.rate:7.1f} {run.ms(run.totals, 50):7.2f} "
        f"{run.ms(run.totals, 99):7.2f} {run.ms(run.starts, 50):9.2f} "
        f"{run.ms(run.submits, 50):10.2f} {run.per_instance_ms(run.server_cpu):8.2f} "
        f"{run.per_instance_ms(run.client_cpu):8.2f} {len(run.errors):4d}"
    )


@dataclass
class LevelResult:
    synchronous: str
    floors: list[Floor]  # 4 txns: one per round, interleaved with the 1-client pieces
    floors_2txn: list[Floor]  # before, after
    runs: list[Run]
    stored: int
    completed: int

    @staticmethod
    def pooled_rate(floors: list[Floor]) -> float:
        seconds = sum(f.seconds for f in floors)
        return sum(f.instances for f in floors) / seconds if seconds else 0.0


def choose_client(server: Server, token: str, args: argparse.Namespace) -> tuple[str, list[Run]]:
    if args.client != "auto":
        return args.client, []
    trials = [
        measure_run(f"calibrate {kind}", server, token, kind, 1, args.calibrate, args.max_seconds)
        for kind in CLIENT_KINDS
    ]
    cheapest = min(trials, key=lambda run: run.per_instance_ms(run.client_cpu))
    return cheapest.client, trials


def run_level(
    synchronous: str, folder: Path, token: str, args: argparse.Namespace, client: str | None
) -> tuple[LevelResult, str, list[Run]]:
    floor_path = folder / f"floor-{synchronous}.db"

    def floor(txns: int, instances: int) -> Floor:
        return measure_floor(floor_path, synchronous=synchronous, instances=instances, txns=txns)

    rounds = max(1, args.rounds)
    before2 = floor(2, args.floor_instances)
    floors4: list[Floor] = []
    pieces: list[Run] = []
    trials: list[Run] = []
    with Server.opensop(
        folder / f"opensop-{synchronous}.db",
        token=token,
        synchronous=synchronous,
        log_dir=folder,
        load_dir=PROCESS_DIR,
    ) as server:
        if client is None:
            client, trials = choose_client(server, token, args)
        measure_run("warm-up", server, token, client, 1, args.warmup, args.max_seconds)
        for _ in range(rounds):
            floors4.append(floor(4, max(1, args.floor_instances // rounds)))
            pieces.append(
                measure_run(
                    "1 client",
                    server,
                    token,
                    client,
                    1,
                    max(1, args.instances // rounds),
                    args.max_seconds / rounds,
                )
            )
        runs = [
            merged(f"1 client ({rounds} rounds)", pieces),
            measure_run(
                f"{args.clients} clients x {args.each} each",
                server,
                token,
                client,
                args.clients,
                args.each,
                args.max_seconds,
            ),
        ]
        stored = instance_count(server, token, f"&process={PROCESS}")
        completed = instance_count(server, token, f"&process={PROCESS}&state=completed")
    after2 = floor(2, args.floor_instances)
    result = LevelResult(synchronous, floors4, [before2, after2], runs, stored, completed)
    return result, client, trials


def print_level(result: LevelResult, client: str) -> list[tuple[str, bool, str]]:
    sync = result.synchronous
    print(banner(f"W1 over HTTP, SQLite WAL synchronous={sync}, client {client}"))
    print(HEADER)
    for run in result.runs:
        print(run_row(run))
    print(
        "  (latencies per instance: start sent -> completed read; srv/cli CPU: ms per "
        "instance of the server / this client process)"
    )
    for run in result.runs:
        print(
            f"  {run.label}: server CPU {run.per_instance_ms(run.server_user):.2f} ms user + "
            f"{run.per_instance_ms(run.server_sys):.2f} ms system per instance "
            f"= {run.server_cpu / run.seconds:.0%} of one core"
        )
    for run in result.runs:
        for error in run.errors[:3]:
            print(f"  error in {run.label}: {error}")
    print(
        f"store: {result.completed} of {result.stored} {PROCESS} instances completed "
        "(warm-up and calibration included)"
    )
    floor4 = result.pooled_rate(result.floors)
    floor2 = result.pooled_rate(result.floors_2txn)
    for floor in result.floors + result.floors_2txn:
        print(floor.line())
    one = result.runs[0]
    print(
        f"ours {one.rate:,.0f}/s (1 client) vs floor {floor4:,.0f}/s (4 txns, interleaved "
        f"with it): floor / ours = {floor4 / one.rate if one.rate else float('inf'):.2f}x"
        f"  | vs the 2-txn floor {floor2:,.0f}/s: {floor2 / one.rate if one.rate else 0:.2f}x"
    )
    two = result.runs[1]
    print(
        f"ours {two.rate:,.0f}/s ({two.label}) vs floor {floor4:,.0f}/s: "
        f"{floor4 / two.rate if two.rate else float('inf'):.2f}x"
    )
    if sync != "FULL":
        return []
    factor = floor4 / one.rate if one.rate else float("inf")
    return [
        (
            f">= {TARGET_RATE:.0f} instances/s, 1 client, FULL",
            one.rate >= TARGET_RATE,
            f"{one.rate:,.1f}/s",
        ),
        (
            f"within {TARGET_FLOOR_FACTOR:.0f}x of the raw sqlite3 floor, FULL",
            factor <= TARGET_FLOOR_FACTOR,
            f"{factor:.2f}x ({floor4:,.0f}/s)",
        ),
        (
            "no errors",
            all(not run.errors for run in result.runs),
            str(sum(len(run.errors) for run in result.runs)),
        ),
    ]


def main() -> int:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    token = new_token()
    print(banner("w1_peer: value -> form -> value, start + submit per instance"))
    print(machine_line())
    print(source_line())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"runs: {args.instances} instances x 1 client, then {args.clients} clients x "
        f"{args.each} instances EACH ({args.clients * args.each} in all); "
        f"{args.warmup} warm-up instances first; one fresh server per synchronous level"
    )
    results: list[LevelResult] = []
    trials: list[Run] = []
    client: str | None = None if args.client == "auto" else args.client
    try:
        with terminate_as_exit():
            for synchronous in args.sqlite_synchronous:
                result, client, found = run_level(synchronous, folder, token, args, client)
                results.append(result)
                trials += found
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    assert client is not None
    if trials:
        print(banner("client choice (1 client, same server, before the measured runs)"))
        print(HEADER)
        for run in trials:
            print(run_row(run))
        print(f"chosen: {client} (lowest client CPU per instance)")
    checks: list[tuple[str, bool, str]] = []
    for result in results:
        checks += print_level(result, client)
    print(banner("peers' published figures (context only, NOT measured here)"))
    for line in PEERS:
        print(f"  {line}")
    print(banner("verdict"))
    for label, ok, value in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label:52} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
