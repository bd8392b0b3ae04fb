"""Shared pieces of the benchmarks: ports, servers, RSS, percentiles and load generation.

Every server is a real subprocess on 127.0.0.1 with a bounded start-up wait, and is
stopped (SIGTERM, then SIGKILL after a bounded wait) when its ``with`` block ends, even
when the benchmark fails or is interrupted. Load comes from a separate process so the
generator does not share the server's interpreter: ``wrk`` when it is installed (C, far
cheaper per request than any Python client), else ``bench/loadgen.py`` (asyncio streams
with HTTP/1.1 keep-alive). Both report the same ``LoadResult``.

    with Server.opensop(db_path, token=token) as server:
        result = run_load(server.url("/sop/customer-onboarding/start"), ...)
        print(result.rps, result.p99_ms, rss_mib(server.pid))
"""

from __future__ import annotations

import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
VAR_DIR = REPO_DIR / "var" / "bench"
EXAMPLES_DIR = REPO_DIR / "examples"

HOST = "127.0.0.1"
START_PATH = "/sop/customer-onboarding/start"
START_BODY = {"inputs": {"company_name": "Acme Corp", "country": "US"}}

SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 10.0
# Added to a load run's own length before its generator is killed as hung.
LOAD_GRACE_SECONDS = 30.0


def new_token() -> str:
    """A fresh bootstrap admin token for one run (the server stores only its hash)."""
    return "sk_bench_" + secrets.token_urlsafe(32)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def opensop_executable() -> str:
    """The ``opensop`` script of the interpreter running the benchmark (the venv's)."""
    beside = Path(sys.executable).with_name("opensop")
    if beside.exists():
        return str(beside)
    found = shutil.which("opensop")
    if found is None:
        raise SystemExit("cannot find the `opensop` command: run from the project venv")
    return found


# -- process memory ----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """The resident set size of a live process, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used, from /proc/<pid>/stat."""
    user, system = cpu_times(pid)
    return user + system


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process, all threads, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime (fields 14, 15)


def thread_cpu_times(pid: int) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds of each live thread of a process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    times: dict[int, tuple[float, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        times[int(task.name)] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return times


# -- statistics --------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0 <= pct <= 100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# -- servers -----------------------------------------------------------------------------


class ServerError(RuntimeError):
    pass


@dataclass
class Server:
    """A server subprocess listening on 127.0.0.1:port; use it as a context manager."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str]
    log_path: Path
    ready_path: str = "/healthz"
    start_timeout: float = SERVER_START_TIMEOUT
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def opensop(
        cls,
        db_path: Path,
        *,
        token: str,
        synchronous: str = "FULL",
        port: int | None = None,
        log_dir: Path | None = None,
        start_timeout: float = SERVER_START_TIMEOUT,
        load_dir: Path = EXAMPLES_DIR,
        workers: int | None = None,
    ) -> Server:
        """``opensop serve --load examples`` on a SQLite file with a bootstrap token.

        ``load_dir`` registers another folder of process files instead; ``workers`` sets
        ``--workers`` (background jobs at once; the server's default when None).
        """
        port = port or free_port()
        env = {
            **os.environ,
            "OPENSOP_API_TOKEN": token,
            "OPENSOP_SQLITE_SYNCHRONOUS": synchronous,
        }
        argv = [
            opensop_executable(),
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--database-url",
            sqlite_url(db_path),
            "--load",
            str(load_dir),
        ]
        if workers is not None:
            argv += ["--workers", str(workers)]
        log_dir = log_dir or db_path.parent
        return cls(
            "opensop", argv, port, env, log_dir / f"opensop-{port}.log", start_timeout=start_timeout
        )

    @classmethod
    def baseline(
        cls, db_path: Path, *, synchronous: str = "FULL", log_dir: Path | None = None
    ) -> Server:
        """``bench/baseline_app.py``: bare FastAPI + one SQLite insert per request."""
        port = free_port()
        argv = [
            sys.executable,
            str(BENCH_DIR / "baseline_app.py"),
            "--port",
            str(port),
            "--db",
            str(db_path),
            "--synchronous",
            synchronous,
        ]
        log_dir = log_dir or db_path.parent
        return cls("baseline", argv, port, dict(os.environ), log_dir / f"baseline-{port}.log")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.name} is not running")
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(SERVER_STOP_TIMEOUT)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode} while starting:\n"
                    + self.log_tail()
                )
            status, _, _ = http_request(
                "GET", self.url(self.ready_path), timeout=2.0, tolerate_errors=True
            )
            if status == 200:
                return
            time.sleep(0.1)
        raise ServerError(
            f"{self.name} not ready after {self.start_timeout:.0f} s:\n{self.log_tail()}"
        )


def http_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    tolerate_errors: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """One request over a fresh connection (http.client: no proxy settings apply)."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    if host != HOST:
        raise ValueError(f"benchmarks only talk to {HOST}, not {host}")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, "/" + path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    except OSError:
        if tolerate_errors:
            return 0, {}, b""
        raise
    finally:
        conn.close()


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def start_one(server: Server, token: str) -> dict[str, Any]:
    """Start one instance and return it; fails loudly unless the answer is 201."""
    status, _, data = http_request(
        "POST",
        server.url(START_PATH),
        headers=auth_headers(token),
        body=json.dumps(START_BODY).encode(),
    )
    if status != 201:
        raise ServerError(f"start answered {status}: {data[:300]!r}")
    result: dict[str, Any] = json.loads(data)
    return result


def instance_count(server: Server, token: str, query: str = "") -> int:
    """The store's instance total, from X-Total-Count of ``GET /sop/instances``."""
    status, headers, data = http_request(
        "GET", server.url(f"/sop/instances?limit=1{query}"), headers=auth_headers(token)
    )
    if status != 200:
        raise ServerError(f"GET /sop/instances answered {status}: {data[:300]!r}")
    return int(headers["x-total-count"])


# -- load generation ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured. Latencies are per request, in milliseconds."""

    generator: str
    clients: int
    seconds: float
    requests: int
    expected: int  # responses with the expected status
    statuses: dict[str, int]  # status code -> count ("socket" for transport errors)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.requests - self.expected + self.statuses.get("socket", 0)

    def lines(self) -> list[str]:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return [
            f"requests      {self.requests} in {self.seconds:.1f} s "
            f"({self.clients} clients, {self.generator})",
            f"throughput    {self.rps:,.0f} req/s",
            f"latency ms    p50 {self.p50_ms:.2f}  p90 {self.p90_ms:.2f}  "
            f"p99 {self.p99_ms:.2f}  max {self.max_ms:.2f}  mean {self.mean_ms:.2f}",
            f"errors        {self.errors}  (statuses: {statuses})",
        ]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def choose_generator(name: str) -> str:
    """``auto`` picks wrk when installed; ``wrk`` insists on it; ``asyncio`` never uses it."""
    if name == "auto":
        return "wrk" if wrk_available() else "asyncio"
    if name == "wrk" and not wrk_available():
        raise SystemExit("wrk is not installed (apt-get install -y wrk) — or use --loadgen asyncio")
    return name


def run_load(
    url: str,
    *,
    method: str = "POST",
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    clients: int = 16,
    seconds: float | None = None,
    total: int | None = None,
    expect: int = 201,
    generator: str = "auto",
    wrk_threads: int = 1,
) -> LoadResult:
    """Drive ``url`` from a separate process, for ``seconds`` or for ``total`` requests.

    ``total`` needs the asyncio generator (wrk only stops by time).
    """
    if (seconds is None) == (total is None):
        raise ValueError("give exactly one of seconds and total")
    payload = json.dumps(body).encode() if body is not None else b""
    chosen = "asyncio" if total is not None else choose_generator(generator)
    if chosen == "wrk":
        assert seconds is not None
        return _run_wrk(
            url, method, payload, dict(headers or {}), clients, seconds, expect, wrk_threads
        )
    return _run_asyncio(url, method, payload, dict(headers or {}), clients, seconds, total, expect)


_WRK_SCRIPT = """
wrk.method = {method}
wrk.body = {body}
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {{}} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local counts = {{}}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {{}}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%s": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {{"requests": %d, "duration_us": %d, "p50": %f, "p90": %f, "p99": %f, ' ..
    '"max": %f, "mean": %f, "socket_errors": %d, "statuses": {{%s}}}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _run_wrk(
    url: str,
    method: str,
    payload: bytes,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    expect: int,
    threads: int,
) -> LoadResult:
    header_lines = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
    )
    script = _WRK_SCRIPT.format(
        method=_lua_string(method),
        body=_lua_string(payload.decode()) if payload else "nil",
        headers=header_lines,
    )
    threads = max(1, min(threads, clients))
    with tempfile.TemporaryDirectory(prefix="opensop-wrk-") as folder:
        script_path = Path(folder) / "load.lua"
        script_path.write_text(script)
        argv = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(clients),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script_path),
            url,
        ]
        output = _run_generator(argv, seconds)
    line = next((x for x in output.splitlines() if x.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
    data = json.loads(line.removeprefix("WRK_RESULT "))
    statuses = {k: int(v) for k, v in data["statuses"].items()}
    if data["socket_errors"]:
        statuses["socket"] = int(data["socket_errors"])
    return LoadResult(
        generator=f"wrk -t{threads}",
        clients=clients,
        seconds=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        expected=statuses.get(str(expect), 0),
        statuses=statuses,
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        mean_ms=data["mean"] / 1000,
    )


def _run_asyncio(
    url: str,
    method: str,
    payload: bytes,
    headers: dict[str, str],
    clients: int,
    seconds: float | None,
    total: int | None,
    expect: int,
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="opensop-load-") as folder:
        body_path = Path(folder) / "body"
        body_path.write_bytes(payload)
        argv = [
            sys.executable,
            str(BENCH_DIR / "loadgen.py"),
            url,
            "--method",
            method,
            "--clients",
            str(clients),
            "--body-file",
            str(body_path),
            "--expect",
            str(expect),
            "--json",
        ]
        for key, value in headers.items():
            argv += ["--header", f"{key}: {value}"]
        if seconds is not None:
            argv += ["--seconds", f"{seconds:g}"]
            limit = seconds
        else:
            argv += ["--total", str(total)]
            limit = loadgen_time_limit(total or 0)
            argv += ["--max-seconds", f"{limit:g}"]
        output = _run_generator(argv, limit)
    data = json.loads(output.strip().splitlines()[-1])
    return LoadResult(**data)


def loadgen_time_limit(total: int) -> float:
    """Bound for a count-limited run: generous (50 requests/s) but never unbounded."""
    return max(60.0, total / 50)


def _run_generator(argv: list[str], seconds: float) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + LOAD_GRACE_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"load generator hung: {argv[0]}") from error
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


# -- script plumbing ---------------------------------------------------------------------


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop the servers we started."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def py_spy_executable() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit(
            "py-spy is not installed: .venv/bin/pip install py-spy (not a project dep)"
        )
    return found


@contextmanager
def py_spy_recording(
    pid: int,
    out: Path,
    *,
    rate: int = 200,
    flags: Sequence[str] = ("--gil",),
    max_seconds: float = 3600,
) -> Iterator[None]:
    """Sample ``pid`` with py-spy (raw stacks into ``out``) while the block runs.

    ``flags``: which samples: ``--gil`` only GIL-holding ones (the Python CPU work),
    ``--threads`` / ``--idle`` every thread, idle ones too.
    py-spy stops at the end of the block (SIGINT makes it write its file), or after
    ``max_seconds`` whatever happens.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        py_spy_executable(),
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--duration",
        f"{max_seconds:.0f}",
        "--format",
        "raw",
        "--nonblocking",  # sample without pausing the server (pausing costs throughput)
        *flags,
        "-o",
        str(out),
    ]
    spy = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        time.sleep(0.5)  # attached before the load starts
        yield
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
        try:
            _, errors = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, errors = spy.communicate(timeout=10)
    if not out.exists():
        raise SystemExit(f"py-spy wrote no profile: {errors.decode()[-1000:]}")


def banner(title: str) -> str:
    return f"\n== {title} " + "=" * max(0, 76 - len(title))


def machine_line() -> str:
    return f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def source_line() -> str:
    """The commit the server runs, and the files changed on top of it (read-only git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "source: unknown (no git)"
    dirty = [line[3:] for line in status if line.strip()]
    return f"source: {commit}" + (
        f" + uncommitted {', '.join(dirty)}" if dirty else " (clean src/)"
    )
