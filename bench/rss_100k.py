"""Server memory while the store grows: RSS at 0, 50k and 100k instances started over HTTP.

Starts ``opensop serve`` on a fresh SQLite file, then creates instances with
``POST /sop/customer-onboarding/start`` as fast as N concurrent keep-alive clients can
(bench/loadgen.py, bounded by count and time), reading the server's VmRSS at each
checkpoint. Target: RSS < 150 MB at 100,000 instances.

    .venv/bin/python bench/rss_100k.py                      # 100,000 in 2 halves, 16 clients
    .venv/bin/python bench/rss_100k.py --instances 20000 --checkpoints 4
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import (
    START_BODY,
    START_PATH,
    VAR_DIR,
    Server,
    auth_headers,
    banner,
    instance_count,
    machine_line,
    new_token,
    rss_kib,
    run_load,
    terminate_as_exit,
)

TARGET_RSS_MB = 150.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--instances", type=int, default=100_000, help="instances to create")
    parser.add_argument(
        "--checkpoints", type=int, default=2, help="RSS readings after this many equal batches"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=VAR_DIR / "rss_100k",
        help="where the SQLite file and server log go",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and log")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    token = new_token()
    batch = args.instances // args.checkpoints
    print(banner(f"rss_100k: server RSS while creating {args.instances:,} instances"))
    print(machine_line())
    print(
        f"{args.clients} keep-alive clients (bench/loadgen.py), SQLite WAL, "
        f"synchronous={args.sqlite_synchronous}"
    )
    # VmRSS is reported in KiB; the target is in MB (10^6 bytes), as the issue states it.
    rows: list[tuple[int, float, float, float, int]] = []  # count, MB, s, rps, errors
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
            started = time.monotonic()
            rows.append(
                (instance_count(server, token), rss_kib(server.pid) * 1024 / 1e6, 0.0, 0.0, 0)
            )
            for index in range(args.checkpoints):
                size = batch if index < args.checkpoints - 1 else args.instances - batch * index
                result = run_load(
                    server.url(START_PATH),
                    body=START_BODY,
                    headers=auth_headers(token),
                    clients=args.clients,
                    total=size,
                )
                count = instance_count(server, token)
                rows.append(
                    (
                        count,
                        rss_kib(server.pid) * 1024 / 1e6,
                        time.monotonic() - started,
                        result.rps,
                        result.errors,
                    )
                )
                print(
                    f"  ... {count:>9,} instances, RSS {rows[-1][1]:.1f} MB, "
                    f"{result.rps:,.0f} starts/s, p99 {result.p99_ms:.1f} ms",
                    flush=True,
                )
            elapsed = time.monotonic() - started
            db_bytes = sum(p.stat().st_size for p in folder.glob("opensop.db*"))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print(banner("result"))
    print(f"{'instances':>10}  {'RSS MB':>8}  {'elapsed s':>9}  {'batch starts/s':>14}  errors")
    for count, mb, seconds, rps, errors in rows:
        print(f"{count:>10,}  {mb:>8.1f}  {seconds:>9.1f}  {rps:>14,.0f}  {errors}")
    print(
        f"elapsed       {elapsed:.1f} s for {rows[-1][0]:,} instances "
        f"({rows[-1][0] / elapsed:,.0f}/s overall)"
    )
    print(f"database      {db_bytes / 1e6:.0f} MB on disk (with WAL)")
    final_mb = rows[-1][1]
    ok = final_mb < TARGET_RSS_MB
    print(
        f"  [{'PASS' if ok else 'FAIL'}] RSS < {TARGET_RSS_MB:g} MB at {rows[-1][0]:,} "
        f"instances: {final_mb:.1f} MB"
    )
    errors = sum(r[4] for r in rows)
    print(f"  [{'PASS' if errors == 0 else 'FAIL'}] no errors: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
