"""Does a big store slow OpenSOP down? Empty store against one holding 1,000,000 instances.

For each store it starts ``opensop serve`` and measures, over HTTP:

- the list view ``GET /sop/instances?state=running&process=customer-onboarding``: one
  client, ~200 sequential requests (target at 1M: p99 < 50 ms);
- start latency: one client, sequential starts (the cleanest latency figure);
- start under load: N keep-alive clients for S seconds (as http_start.py does).

Target: start latency on the big store within 20 % of the empty store's.

The big store is filled by bench/fill_store.py (bulk SQL rows cloned from real ones) and
cached under var/bench/large_store/, keyed by size and schema head; ``--rebuild`` forces
a new fill. Each run works on a copy, so the starts it makes never grow the cache.

    .venv/bin/python bench/large_store.py                 # 1M (fills once, ~2 min here)
    .venv/bin/python bench/large_store.py --instances 100000 --rebuild
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
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
    instance_count,
    machine_line,
    new_token,
    remove_sqlite_files,
    rss_mib,
    run_load,
    terminate_as_exit,
)
from fill_store import PROCESS, fill, schema_head

LIST_QUERY = f"/sop/instances?state=running&process={PROCESS}"
TARGET_LIST_P99_MS = 50.0
TARGET_START_SLOWDOWN = 0.20
# The big store's first start-up reads a large file: allow it longer.
BIG_START_TIMEOUT = 180.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--instances", type=int, default=1_000_000, help="big store size")
    parser.add_argument("--rebuild", action="store_true", help="refill the cached big store")
    parser.add_argument(
        "--list-requests", type=int, default=200, help="sequential list requests per store"
    )
    parser.add_argument(
        "--starts", type=int, default=500, help="sequential starts per store (1 client)"
    )
    parser.add_argument("--clients", type=int, default=16, help="clients for the loaded starts")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="loaded-start run per store (0 to skip)"
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "asyncio"],
        default="auto",
        help="generator of the loaded starts (auto = wrk when installed)",
    )
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=VAR_DIR / "large_store",
        help="where the filled store is kept between runs",
    )
    return parser.parse_args()


# -- the cached big store ----------------------------------------------------------------


def cached_store(args: argparse.Namespace) -> Path:
    """The filled store for ``args.instances``, built now if missing, stale or asked to."""
    path: Path = args.cache_dir / f"store-{args.instances}.db"
    meta_path = path.with_suffix(".json")
    head = schema_head()
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    fresh = path.exists() and meta.get("schema_head") == head
    if fresh and not args.rebuild:
        print(f"big store: {path} (cached, built {meta.get('built_at')}; --rebuild to refill)")
        return path
    print(f"big store: filling {path} with {args.instances:,} instances ...", flush=True)
    meta_path.unlink(missing_ok=True)
    report = fill(path, args.instances, progress=lambda line: print(line, flush=True))
    meta = {
        "instances": report.instances,
        "steps": report.steps,
        "events": report.events,
        "fill_seconds": round(report.seconds, 1),
        "bytes": report.bytes,
        "schema_head": head,
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"big store: {report.instances:,} instances, {report.steps:,} steps, "
        f"{report.events:,} events, {report.bytes / 1e6:,.0f} MB in "
        f"{report.seconds:.0f} s"
    )
    return path


def working_copy(source: Path, folder: Path) -> Path:
    target = folder / "big.db"
    remove_sqlite_files(target)
    began = time.monotonic()
    shutil.copyfile(source, target)
    print(f"big store: copied to {target} in {time.monotonic() - began:.1f} s", flush=True)
    return target


# -- measurements ------------------------------------------------------------------------


@dataclass
class StoreFigures:
    label: str
    instances: int
    matching: int  # rows the list query counts
    listing: LoadResult
    starts: LoadResult
    loaded: LoadResult | None
    rss_mib: float


def measure(label: str, server: Server, token: str, args: argparse.Namespace) -> StoreFigures:
    headers = auth_headers(token)
    instances = instance_count(server, token)
    matching = instance_count(server, token, f"&state=running&process={PROCESS}")
    list_url = server.url(LIST_QUERY)
    run_load(list_url, method="GET", headers=headers, clients=1, total=20, expect=200)
    listing = run_load(
        list_url, method="GET", headers=headers, clients=1, total=args.list_requests, expect=200
    )
    start_url = server.url(START_PATH)
    run_load(start_url, body=START_BODY, headers=headers, clients=1, total=50)
    starts = run_load(start_url, body=START_BODY, headers=headers, clients=1, total=args.starts)
    loaded = None
    if args.seconds > 0:
        loaded = run_load(
            start_url,
            body=START_BODY,
            headers=headers,
            clients=args.clients,
            seconds=args.seconds,
            generator=args.loadgen,
        )
    return StoreFigures(label, instances, matching, listing, starts, loaded, rss_mib(server.pid))


def sql_only(path: Path, repeats: int = 21) -> list[str]:
    """The list view's two statements timed in sqlite3 alone, with their query plans."""
    where = "workspace_id = ? AND process_name = ? AND state = ?"
    params = ("default", PROCESS, "running")
    statements = {
        "count": f"SELECT count(*) FROM instances WHERE {where}",
        "page": "SELECT id, process_name, process_version, state, started_at, completed_at "
        f"FROM instances WHERE {where} ORDER BY id DESC LIMIT 50 OFFSET 0",
    }
    lines = []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for name, sql in statements.items():
            plan = "; ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            timings = []
            for _ in range(repeats):
                began = time.perf_counter()
                conn.execute(sql, params).fetchall()
                timings.append((time.perf_counter() - began) * 1000)
            lines.append(f"  {name:6} median {statistics.median(timings):7.2f} ms   plan: {plan}")
    finally:
        conn.close()
    return lines


def print_figures(figures: StoreFigures) -> None:
    title = f"{figures.label}: {figures.instances:,} instances, RSS {figures.rss_mib:.1f} MiB"
    print(banner(title))
    print(f"GET {LIST_QUERY}  ({figures.matching:,} rows match; X-Total-Count)")
    print("\n".join("  " + line for line in figures.listing.lines()))
    print("POST start, sequential (1 client)")
    print("\n".join("  " + line for line in figures.starts.lines()))
    if figures.loaded is not None:
        print(f"POST start under load ({figures.loaded.clients} clients)")
        print("\n".join("  " + line for line in figures.loaded.lines()))


def verdict(empty: StoreFigures, big: StoreFigures) -> None:
    print(banner("verdict"))

    def change(a: float, b: float) -> str:
        return f"{(b / a - 1) * 100:+.1f} %" if a else "n/a"

    rows = [
        ("start p50, sequential", empty.starts.p50_ms, big.starts.p50_ms),
        ("start p99, sequential", empty.starts.p99_ms, big.starts.p99_ms),
    ]
    if empty.loaded is not None and big.loaded is not None:
        rows += [
            ("start p50, loaded", empty.loaded.p50_ms, big.loaded.p50_ms),
            ("start p99, loaded", empty.loaded.p99_ms, big.loaded.p99_ms),
            ("starts/s, loaded", empty.loaded.rps, big.loaded.rps),
        ]
    rows += [
        ("list p50", empty.listing.p50_ms, big.listing.p50_ms),
        ("list p99", empty.listing.p99_ms, big.listing.p99_ms),
    ]
    print(f"{'':24} {'empty':>10} {big.label:>12} {'change':>10}")
    for name, a, b in rows:
        print(f"{name:24} {a:>10.2f} {b:>12.2f} {change(a, b):>10}")
    slowdown = big.starts.p50_ms / empty.starts.p50_ms - 1
    errors = sum(r.errors for f in (empty, big) for r in (f.listing, f.starts, f.loaded) if r)
    checks = [
        (
            f"start p50 within {TARGET_START_SLOWDOWN:.0%} (sequential)",
            slowdown <= TARGET_START_SLOWDOWN,
            f"{slowdown * 100:+.1f} %",
        ),
        (
            f"list p99 < {TARGET_LIST_P99_MS:g} ms at {big.instances:,}",
            big.listing.p99_ms < TARGET_LIST_P99_MS,
            f"{big.listing.p99_ms:.2f} ms",
        ),
        ("no errors", errors == 0, str(errors)),
    ]
    for label, ok, value in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label:42} {value}")


def main() -> int:
    args = parse_args()
    generator = choose_generator(args.loadgen)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print(banner("large_store: empty store vs a big one"))
    print(machine_line())
    print(
        f"list: {args.list_requests} sequential GETs; starts: {args.starts} sequential, then "
        f"{args.clients} clients x {args.seconds:g} s ({generator}); "
        f"synchronous={args.sqlite_synchronous}"
    )
    token = new_token()
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.cache_dir))
    sync = args.sqlite_synchronous
    try:
        with terminate_as_exit():
            source = cached_store(args)
            with Server.opensop(
                folder / "empty.db", token=token, synchronous=sync, log_dir=folder
            ) as server:
                empty = measure("empty", server, token, args)
            print_figures(empty)
            big_path = working_copy(source, folder)
            sql_lines = sql_only(big_path)
            with Server.opensop(
                big_path,
                token=token,
                synchronous=sync,
                log_dir=folder,
                start_timeout=BIG_START_TIMEOUT,
            ) as server:
                big = measure(f"{args.instances:,}", server, token, args)
            print_figures(big)
            print("list view's SQL alone (sqlite3 on the same file, warm cache):")
            print("\n".join(sql_lines))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    verdict(empty, big)
    return 0


if __name__ == "__main__":
    sys.exit(main())
