"""An external worker for the benchmarks: claim waiting automated steps, submit each.

Loops ``POST /sop/steps/claim {"worker", "lease_seconds", "limit"}`` then, for every step
it got, ``POST /sop/{process}/{instance}/steps/{step}/submit`` with ``{"n": n + 1}`` (the
step's input ``n`` plus one) and the lease token, over one keep-alive connection. Stops
after ``--idle-claims`` empty claims in a row (``--idle-sleep-ms`` apart), after
``--max-steps`` submissions, or after ``--max-seconds``. Prints its timings as one JSON
line (``--json``) or a summary. The token comes from ``$OPENSOP_TOKEN`` (not argv, so it
does not show in ``ps``).

    OPENSOP_TOKEN=sk_... .venv/bin/python bench/external_worker.py --port 8080 --name w1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from common import HOST, percentile
from keepalive import RawConnection, run_async


@dataclass
class Tally:
    name: str
    claims: int = 0
    empty_claims: int = 0
    submitted: int = 0
    errors: list[str] = field(default_factory=list)
    claim_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    first_claim: float | None = None  # time.monotonic(): one clock for all processes
    last_submit: float | None = None
    cpu_seconds: float = 0.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, required=True, help="the server on 127.0.0.1")
    parser.add_argument("--name", default=f"bench-worker-{os.getpid()}", help="worker name")
    parser.add_argument("--limit", type=int, default=10, help="steps per claim")
    parser.add_argument("--lease-seconds", type=int, default=60)
    parser.add_argument("--process", help="claim only this process's steps")
    parser.add_argument("--idle-claims", type=int, default=50, help="stop after N empty claims")
    parser.add_argument("--idle-sleep-ms", type=float, default=10.0, help="after an empty claim")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--max-errors", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    return parser.parse_args()


async def work(args: argparse.Namespace, token: str) -> Tally:
    tally = Tally(args.name)
    claim: dict[str, object] = {
        "worker": args.name,
        "lease_seconds": args.lease_seconds,
        "limit": args.limit,
    }
    if args.process:
        claim["process"] = args.process
    claim_body = json.dumps(claim).encode()
    deadline = time.monotonic() + args.max_seconds
    idle = 0
    async with RawConnection(HOST, args.port, token) as conn:
        while (
            idle < args.idle_claims
            and tally.submitted < args.max_steps
            and time.monotonic() < deadline
            and len(tally.errors) <= args.max_errors
        ):
            sent = time.monotonic()
            status, body = await conn.request("POST", "/sop/steps/claim", claim_body)
            tally.claim_ms.append((time.monotonic() - sent) * 1000)
            tally.claims += 1
            if status != 200:
                tally.errors.append(f"claim answered {status}: {body[:200]!r}")
                continue
            steps = json.loads(body)
            if not steps:
                tally.empty_claims += 1
                idle += 1
                await asyncio.sleep(args.idle_sleep_ms / 1000)
                continue
            idle = 0
            if tally.first_claim is None:
                tally.first_claim = sent
            for step in steps:
                inputs = step.get("inputs") or {}
                payload = {
                    "outputs": {"n": int(inputs.get("n", 0)) + 1},
                    "lease_token": step["lease_token"],
                }
                path = (
                    f"/sop/{step['process']}/{step['instance_id']}/steps/{step['step_id']}/submit"
                )
                sent = time.monotonic()
                status, body = await conn.request("POST", path, json.dumps(payload).encode())
                done = time.monotonic()
                tally.submit_ms.append((done - sent) * 1000)
                if status != 200:
                    tally.errors.append(f"submit answered {status}: {body[:200]!r}")
                    continue
                tally.submitted += 1
                tally.last_submit = done
    return tally


def main() -> int:
    args = parse_args()
    token = os.environ.get("OPENSOP_TOKEN")
    if not token:
        raise SystemExit("set OPENSOP_TOKEN to an API token with the advance scope")
    cpu0 = time.process_time()
    tally = run_async(work(args, token))
    tally.cpu_seconds = time.process_time() - cpu0
    if args.json:
        sys.stdout.write(json.dumps(asdict(tally)) + "\n")
    else:
        claims, submits = sorted(tally.claim_ms), sorted(tally.submit_ms)
        print(
            f"{tally.name}: {tally.submitted} submitted in {tally.claims} claims "
            f"({tally.empty_claims} empty); claim ms p50 {percentile(claims, 50):.2f} "
            f"p99 {percentile(claims, 99):.2f}; submit ms p50 {percentile(submits, 50):.2f} "
            f"p99 {percentile(submits, 99):.2f}; errors {len(tally.errors)}"
        )
    return 0 if not tally.errors else 1


if __name__ == "__main__":
    sys.exit(main())
