"""A small HTTP/1.1 keep-alive load generator (asyncio streams, one process).

The fallback when ``wrk`` is not installed, and the generator for runs bounded by a
request count (wrk only stops by time). Each client owns one keep-alive connection and
sends its next request as soon as the previous answer is read (a closed loop, like wrk).

    python bench/loadgen.py http://127.0.0.1:8080/healthz --method GET --clients 4 --seconds 5

Only 127.0.0.1 is accepted. Every run is bounded in time (``--seconds`` or
``--max-seconds``) and in transport errors (``--max-errors``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REQUEST_TIMEOUT = 10.0
ALLOWED_HOSTS = ("127.0.0.1", "localhost")


@dataclass
class Plan:
    host: str
    port: int
    request: bytes
    expect: int
    deadline: float  # monotonic time after which no new request is sent
    total: int | None  # stop after this many requests, when set
    max_errors: int


@dataclass
class Tally:
    issued: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: int = 0

    def take_ticket(self, plan: Plan) -> bool:
        if time.monotonic() >= plan.deadline or self.socket_errors > plan.max_errors:
            return False
        if plan.total is not None and self.issued >= plan.total:
            return False
        self.issued += 1
        return True


def build_request(method: str, url: str, headers: list[str], body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ALLOWED_HOSTS:
        raise SystemExit(f"loadgen only talks plain HTTP to 127.0.0.1, not {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}"]
    lines += headers
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return parts.hostname or "127.0.0.1", parts.port or 80, head + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send one request, read one answer; returns (status, keep the connection open)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
        elif name == b"transfer-encoding":
            raise ValueError("chunked answers are not supported")
    if length:
        await reader.readexactly(length)
    return status, keep_alive


async def client(plan: Plan, tally: Tally) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while tally.take_ticket(plan):
            started = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    if writer is None:
                        reader, writer = await asyncio.open_connection(plan.host, plan.port)
                    assert reader is not None
                    status, keep_alive = await exchange(reader, writer, plan.request)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                tally.socket_errors += 1
                if writer is not None:
                    writer.close()
                writer = reader = None
                continue
            tally.latencies.append((time.perf_counter() - started) * 1000)
            key = str(status)
            tally.statuses[key] = tally.statuses.get(key, 0) + 1
            if not keep_alive:
                writer.close()
                writer = reader = None
    finally:
        if writer is not None:
            writer.close()


async def run(plan: Plan, clients: int) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    await asyncio.gather(*(client(plan, tally) for _ in range(clients)))
    return tally, time.perf_counter() - started


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    rank = max(1, -(-len(values) * pct // 100))
    return values[int(min(rank, len(values))) - 1]


def summarize(tally: Tally, seconds: float, clients: int, expect: int) -> dict[str, object]:
    latencies = sorted(tally.latencies)
    statuses = dict(tally.statuses)
    if tally.socket_errors:
        statuses["socket"] = tally.socket_errors
    return {
        "generator": "loadgen.py (asyncio)",
        "clients": clients,
        "seconds": seconds,
        "requests": len(latencies),
        "expected": statuses.get(str(expect), 0),
        "statuses": statuses,
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "mean_ms": sum(latencies) / len(latencies) if latencies else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="http://127.0.0.1:PORT/path")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--body-file", type=Path, help="request body (sent as is)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--seconds", type=float, help="run this long")
    parser.add_argument("--total", type=int, help="or send this many requests")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=600.0,
        help="hard time bound for --total runs (default 600)",
    )
    parser.add_argument(
        "--max-errors", type=int, default=1000, help="stop after this many transport errors"
    )
    parser.add_argument("--expect", type=int, default=200, help="the successful status")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    if (args.seconds is None) == (args.total is None):
        parser.error("give exactly one of --seconds and --total")

    body = args.body_file.read_bytes() if args.body_file else b""
    host, port, request = build_request(args.method.upper(), args.url, args.header, body)
    limit = args.seconds if args.seconds is not None else args.max_seconds
    plan = Plan(
        host, port, request, args.expect, time.monotonic() + limit, args.total, args.max_errors
    )
    try:
        import uvloop  # cheaper event loop when installed (uvicorn[standard] brings it)
    except ImportError:
        tally, seconds = asyncio.run(run(plan, args.clients))
    else:
        tally, seconds = uvloop.run(run(plan, args.clients))
    result = summarize(tally, seconds, args.clients, args.expect)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:10} {value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
