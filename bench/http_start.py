"""Start throughput over HTTP: OpenSOP against a bare FastAPI + SQLite baseline, same run.

Starts ``opensop serve`` on a fresh SQLite file and drives
``POST /sop/customer-onboarding/start`` with N concurrent keep-alive clients for S seconds
from a separate load-generator process (wrk if installed, else bench/loadgen.py). Then
does the same against ``bench/baseline_app.py`` and prints both, the ratio, the server's
RSS and the targets (>= 1,000 starts/s, p99 < 25 ms, >= 50 % of the baseline).

    .venv/bin/python bench/http_start.py                       # 16 clients, 20 s, FULL
    .venv/bin/python bench/http_start.py --sqlite-synchronous NORMAL
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import (
    START_BODY,
    START_PATH,
    VAR_DIR,
    LoadResult,
    Server,
    auth_headers,
    banner,
    choose_generator,
    cpu_seconds,
    instance_count,
    machine_line,
    new_token,
    rss_mib,
    run_load,
    start_one,
    terminate_as_exit,
)

TARGET_RPS = 1000.0
TARGET_P99_MS = 25.0
TARGET_SHARE = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load per server")
    parser.add_argument(
        "--warmup-seconds", type=float, default=2.0, help="unmeasured load before each measurement"
    )
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="PRAGMA synchronous for both servers (OpenSOP: OPENSOP_SQLITE_SYNCHRONOUS)",
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "asyncio"],
        default="auto",
        help="auto = wrk when installed",
    )
    parser.add_argument(
        "--wrk-threads",
        type=int,
        default=1,
        help="wrk threads (1 leaves the most CPU to the server)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="measure OpenSOP only")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=VAR_DIR / "http_start",
        help="where the SQLite files and server logs go",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    return parser.parse_args()


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    cpu_seconds: float  # the server's user + system CPU during the measured load

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds * 1000 / self.load.requests if self.load.requests else 0.0

    def cpu_line(self) -> str:
        busy = self.cpu_seconds / self.load.seconds if self.load.seconds else 0.0
        return (
            f"server CPU    {self.cpu_ms_per_request:.2f} ms per request "
            f"({busy:.0%} of one core over the run)"
        )


def drive(server: Server, token: str, args: argparse.Namespace) -> Measured:
    headers = auth_headers(token)
    url = server.url(START_PATH)
    if args.warmup_seconds > 0:
        run_load(
            url,
            body=START_BODY,
            headers=headers,
            clients=args.clients,
            seconds=args.warmup_seconds,
            generator=args.loadgen,
            wrk_threads=args.wrk_threads,
        )
    cpu_before = cpu_seconds(server.pid)
    load = run_load(
        url,
        body=START_BODY,
        headers=headers,
        clients=args.clients,
        seconds=args.seconds,
        generator=args.loadgen,
        wrk_threads=args.wrk_threads,
    )
    return Measured(load, cpu_seconds(server.pid) - cpu_before)


def main() -> int:
    args = parse_args()
    generator = choose_generator(args.loadgen)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    token = new_token()
    sync = args.sqlite_synchronous
    print(banner("http_start: POST /sop/customer-onboarding/start"))
    print(machine_line())
    print(
        f"load: {args.clients} keep-alive clients x {args.seconds:g} s (+{args.warmup_seconds:g}"
        f" s warm-up), generator {generator}; SQLite WAL, synchronous={sync}"
    )
    try:
        with terminate_as_exit():
            with Server.opensop(
                folder / "opensop.db", token=token, synchronous=sync, log_dir=folder
            ) as server:
                start_one(server, token)  # fails loudly when start does not answer 201
                rss_start = rss_mib(server.pid)
                ours_run = drive(server, token, args)
                rss_end = rss_mib(server.pid)
                stored = instance_count(server, token)
            base_run: Measured | None = None
            if not args.no_baseline:
                with Server.baseline(
                    folder / "baseline.db", synchronous=sync, log_dir=folder
                ) as base:
                    base_run = drive(base, token, args)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    ours = ours_run.load
    baseline = base_run.load if base_run is not None else None
    print(banner(f"OpenSOP (opensop serve, synchronous={sync})"))
    print("\n".join(ours.lines()))
    print(ours_run.cpu_line())
    print(f"server RSS    {rss_start:.1f} MiB after start-up -> {rss_end:.1f} MiB at the end")
    print(f"instances     {stored} in the store (warm-up included)")
    if base_run is not None:
        print(banner(f"baseline (bench/baseline_app.py, synchronous={sync})"))
        print("\n".join(base_run.load.lines()))
        print(base_run.cpu_line())
    print(banner("verdict"))
    checks = [
        (f"throughput >= {TARGET_RPS:,.0f} starts/s", ours.rps >= TARGET_RPS, f"{ours.rps:,.0f}/s"),
        (f"p99 < {TARGET_P99_MS:g} ms", ours.p99_ms < TARGET_P99_MS, f"{ours.p99_ms:.2f} ms"),
        ("no errors", ours.errors == 0, str(ours.errors)),
    ]
    if baseline is not None:
        share = ours.rps / baseline.rps if baseline.rps else 0.0
        checks.append(
            (f">= {TARGET_SHARE:.0%} of baseline throughput", share >= TARGET_SHARE, f"{share:.1%}")
        )
        print(
            f"OpenSOP / baseline: throughput {share:.1%}, "
            f"p50 latency x{ours.p50_ms / baseline.p50_ms:.2f}, "
            f"p99 latency x{ours.p99_ms / baseline.p99_ms:.2f}"
        )
    for label, ok, value in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label:38} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
