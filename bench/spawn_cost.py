"""What starting a script costs the engine, by spawn method, from a server-sized process.

The job runner starts each script with ``loop.subprocess_exec`` on the server's event
loop, which under uvicorn is uvloop (libuv ``uv_spawn``: fork, then wait for the child's
exec). The cost of fork grows with the parent's memory (page tables to copy), and while
the call runs the event loop, and the GIL, are held. This script grows itself to
``--ballast-mb`` of Python objects (the server's size) and times ``python -c pass`` with:

- ``uvloop``: ``loop.subprocess_exec`` on uvloop (what ``opensop serve`` does now);
- ``asyncio``: ``loop.subprocess_exec`` on the default asyncio loop (``subprocess.Popen``
  underneath: vfork + exec on Linux, no page-table copy);
- ``thread``: ``subprocess.Popen`` + ``wait`` in a worker thread (``asyncio.to_thread``),
  so the loop only waits;
- ``posix_spawn``: ``os.posix_spawn`` + ``waitpid`` in a worker thread.

Per spawn: how long the event loop was blocked in the spawn call, the wall time to the
child's exit, this process's CPU (the parent's share: fork, page tables) and the child's.

    .venv/bin/python bench/spawn_cost.py
    .venv/bin/python bench/spawn_cost.py --ballast-mb 0 --spawns 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from common import banner, machine_line, rss_mib

ARGV = [sys.executable, "-c", "pass"]
METHODS = ("uvloop", "asyncio", "thread", "posix_spawn")


@dataclass(frozen=True)
class Cost:
    method: str
    spawns: int
    blocked_ms: float  # event loop blocked inside the spawn call, mean
    wall_ms: float  # call -> child exited, mean
    parent_cpu_ms: float
    child_cpu_ms: float

    def line(self) -> str:
        return (
            f"  {self.method:12} {self.blocked_ms:10.2f} {self.wall_ms:9.2f} "
            f"{self.parent_cpu_ms:12.2f} {self.child_cpu_ms:11.2f}"
        )


def env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}


async def loop_spawn() -> float:
    """One spawn through the running loop; returns the ms the spawn call itself took."""
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    class Protocol(asyncio.SubprocessProtocol):
        def process_exited(self) -> None:
            if not exited.done():
                exited.set_result(None)

    called = time.perf_counter()
    transport, _ = await loop.subprocess_exec(
        Protocol,
        *ARGV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
        start_new_session=True,
    )
    blocked = time.perf_counter() - called
    try:
        await asyncio.wait_for(exited, 30)
    finally:
        transport.close()
    return blocked * 1000


def popen_and_wait() -> None:
    subprocess.run(
        ARGV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=env(),
        start_new_session=True,
        timeout=30,
        check=True,
    )


def posix_spawn_and_wait() -> None:
    pid = os.posix_spawn(ARGV[0], ARGV, env(), setsid=True)
    os.waitpid(pid, 0)


async def thread_spawn(function: Callable[[], None]) -> float:
    called = time.perf_counter()
    task = asyncio.ensure_future(asyncio.to_thread(function))
    await asyncio.sleep(0)  # the loop is free again once the hop is queued
    blocked = time.perf_counter() - called
    await asyncio.wait_for(task, 30)
    return blocked * 1000


def measure(method: str, spawns: int) -> Cost:
    action: Callable[[], Awaitable[float]]
    if method in ("uvloop", "asyncio"):
        action = loop_spawn
    elif method == "thread":
        action = lambda: thread_spawn(popen_and_wait)  # noqa: E731
    else:
        action = lambda: thread_spawn(posix_spawn_and_wait)  # noqa: E731

    async def many() -> tuple[float, float]:
        await action()  # warm up
        blocked = 0.0
        started = time.perf_counter()
        for _ in range(spawns):
            blocked += await action()
        return blocked, time.perf_counter() - started

    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if method == "uvloop":
        import uvloop

        blocked, wall = uvloop.run(many())
    else:
        blocked, wall = asyncio.run(many())
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu(a: resource.struct_rusage, b: resource.struct_rusage) -> float:
        return (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)

    count = spawns + 1
    return Cost(
        method,
        spawns,
        blocked / spawns,
        wall * 1000 / spawns,
        cpu(before_self, after_self) * 1000 / count,
        cpu(before_children, after_children) * 1000 / count,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--spawns", type=int, default=200, help="spawns per method")
    parser.add_argument(
        "--ballast-mb", type=int, default=100, help="grow this process first (server-sized)"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = parser.parse_args()
    # Many small objects, as a server's heap is (page tables scale with touched memory).
    ballast = [bytearray(1024) for _ in range(args.ballast_mb * 1024)]
    print(banner("spawn_cost: `python -c pass` from a server-sized process"))
    print(machine_line())
    print(f"this process: {rss_mib(os.getpid()):.0f} MiB RSS; {args.spawns} spawns per method")
    print(f"  {'method':12} {'loop ms':>10} {'wall ms':>9} {'parent CPU':>12} {'child CPU':>11}")
    for method in args.methods:
        print(measure(method, args.spawns).line())
    print("  (loop ms: event loop blocked in the spawn call; CPU: ms per spawn)")
    del ballast
    return 0


if __name__ == "__main__":
    sys.exit(main())
