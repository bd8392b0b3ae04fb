"""Run one attempt of an automated step's script as a subprocess, and say what happened.

An ``automated`` step with ``run: steps/score.py`` is run here: the resolved inputs go to
the script as JSON on stdin (and in ``OPENSOP_CONTEXT``), the JSON object it prints on
stdout is its outputs, a non-zero exit is a failure. Nothing here touches the database or
the engine; the job runner turns a ``ScriptOutcome`` into a step result and decides on
retries.

    outcome = await run_script(ScriptRequest(
        process_dir=Path("processes/onboarding"), run="steps/score.py",
        inputs={"who": "Ada"}, instance_id="01J...", step_id="score", attempt=1,
        idempotency_key="01J...:score:1", timeout_seconds=60,
    ))
    if outcome.ok: ...outcome.outputs...

Safety rules, each for a reason:

- the script must resolve (symlinks followed) inside the process folder, so a definition
  cannot run arbitrary files of the host;
- the environment is built from scratch and never inherits the engine's, which holds the
  API token and the database URL;
- the script runs in a session (and process group) of its own; whatever happens (normal
  exit, timeout, too much output, the engine cancelling the task) the whole group is
  killed before we return, so a script cannot leave processes behind. A process that
  starts a session of its own (``setsid``) leaves the group and is out of our reach; we
  stop waiting for the pipes it holds after ``KILL_WAIT_SECONDS``.

POSIX only (process groups, ``os.killpg``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from opensop import json_values

log = logging.getLogger("opensop.runtime.scripts")

STDOUT_LIMIT = 1024 * 1024
"""Bytes of stdout a script may print; more is ``output_too_large``."""
STDERR_LIMIT = 64 * 1024
"""Bytes of stderr kept, the last ones (the end is where the error usually is)."""
TERM_GRACE_SECONDS = 0.5
"""After a timeout, how long the script gets between SIGTERM and SIGKILL to clean up."""
KILL_WAIT_SECONDS = 2.0
"""After SIGKILL, how long to wait for the exit to be reaped and the pipes to close."""
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

# Linux refuses to exec with any single environment string longer than MAX_ARG_STRLEN
# (32 pages); checking first gives the author a sentence instead of "Argument list too long".
_ENV_STRING_LIMIT = 32 * 4096 - 1
_CONTEXT_VARIABLE = "OPENSOP_CONTEXT"
_INTERPRETED = frozenset({".py", ".sh"})


class ScriptErrorCode(StrEnum):
    """Why an attempt failed; stable strings the runner records and people read."""

    SCRIPT_NOT_FOUND = "script_not_found"  # no regular file at the `run:` path
    NOT_EXECUTABLE = "not_executable"  # not .py/.sh, and no execute bit or no `#!` line
    PATH_ESCAPE = "path_escape"  # absolute, `..` or a symlink leading out of the folder
    TIMEOUT = "timeout"  # still running when timeout_seconds were up; killed
    EXIT_STATUS = "exit_status"  # exited non-zero or was killed by a signal
    INVALID_OUTPUT = "invalid_output"  # exited 0 but stdout is not one UTF-8 JSON object
    SPAWN_FAILED = "spawn_failed"  # the OS could not start it (interpreter, env, limits)
    OUTPUT_TOO_LARGE = "output_too_large"  # printed more than STDOUT_LIMIT; killed


class ScriptPathError(Exception):
    """The `run:` path cannot be run; raised by ``resolve_script``."""

    def __init__(self, code: ScriptErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ScriptRequest:
    """One attempt of one step's script."""

    process_dir: Path
    """The folder `run` is resolved under; the script may not leave it."""
    run: str
    """The relative path from the definition, e.g. ``steps/score.py``."""
    inputs: dict[str, Any]
    """The resolved step inputs; must be JSON-serializable (NaN is refused)."""
    instance_id: str
    step_id: str
    attempt: int
    """1-based."""
    idempotency_key: str
    """Stable per (instance, step, attempt), for the script's side effects."""
    timeout_seconds: float
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """Added to the environment; may set PATH or LANG but never the OPENSOP_* variables.
    Nothing secret of the engine's belongs here."""


@dataclass(frozen=True)
class ScriptOutcome:
    """What one attempt did. ``ok`` means exit 0 with a JSON object on stdout."""

    ok: bool
    outputs: dict[str, Any] | None
    error_code: ScriptErrorCode | None
    error_message: str | None
    exit_status: int | None
    """The exit status; negative -N when killed by signal N; None when it never ran or
    we killed it (timeout, too much output)."""
    stderr: str
    """The last STDERR_LIMIT bytes of stderr, decoded with errors="replace"."""
    duration_seconds: float


def resolve_script(process_dir: Path, run: str) -> Path:
    """The absolute, symlink-free path of the script `run` names under `process_dir`.

    Raises ``ScriptPathError`` (path_escape, script_not_found or not_executable), so the
    same checks serve registration and every attempt.
    """
    if not run or "\x00" in run:
        raise ScriptPathError(ScriptErrorCode.SCRIPT_NOT_FOUND, f"{run!r} is not a script path")
    relative = Path(run)
    if relative.is_absolute():
        raise ScriptPathError(
            ScriptErrorCode.PATH_ESCAPE, f"{run!r} must be relative to the process folder"
        )
    try:
        root = process_dir.resolve()
        script = (root / relative).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop, on 3.11
        raise ScriptPathError(
            ScriptErrorCode.SCRIPT_NOT_FOUND, f"cannot resolve {run!r}: {exc}"
        ) from exc
    # Checked before existence, so a definition cannot probe for files outside its folder.
    if not script.is_relative_to(root):
        raise ScriptPathError(
            ScriptErrorCode.PATH_ESCAPE, f"{run!r} leads outside the process folder"
        )
    if not script.is_file():
        raise ScriptPathError(ScriptErrorCode.SCRIPT_NOT_FOUND, f"no script file at {run!r}")
    if script.suffix not in _INTERPRETED:
        if not os.access(script, os.X_OK):
            raise ScriptPathError(
                ScriptErrorCode.NOT_EXECUTABLE,
                f"{run!r} is neither .py nor .sh and is not executable (chmod +x)",
            )
        if not _has_shebang(script):
            raise ScriptPathError(
                ScriptErrorCode.NOT_EXECUTABLE,
                f"{run!r} is neither .py nor .sh and does not start with a #! line",
            )
    return script


async def run_script(request: ScriptRequest) -> ScriptOutcome:
    """Run one attempt and report it; script problems are outcomes, never exceptions.

    Raises only for the caller's mistakes (inputs that are not JSON) and re-raises
    ``CancelledError`` after killing the script's process group.
    """
    started = time.monotonic()
    context = json.dumps(request.inputs, ensure_ascii=False, allow_nan=False)
    try:
        script = resolve_script(request.process_dir, request.run)
    except ScriptPathError as exc:
        return _failed(started, exc.code, exc.message)
    if len(context.encode()) + len(_CONTEXT_VARIABLE) + 1 > _ENV_STRING_LIMIT:
        return _failed(
            started,
            ScriptErrorCode.SPAWN_FAILED,
            f"the inputs are too large for {_CONTEXT_VARIABLE} "
            f"(the OS allows {_ENV_STRING_LIMIT // 1024} KiB in one environment variable)",
        )
    if script.suffix == ".py" and not sys.executable:
        return _failed(
            started, ScriptErrorCode.SPAWN_FAILED, "the engine does not know its own Python"
        )
    # A fresh HOME (and TMPDIR) per attempt: caches and temp files neither pile up in the
    # process folder nor leak between attempts.
    home = tempfile.mkdtemp(prefix="opensop-script-")
    try:
        return await _run(request, script, context, home, started)
    finally:
        await asyncio.to_thread(shutil.rmtree, home, ignore_errors=True)


async def _run(
    request: ScriptRequest, script: Path, context: str, home: str, started: float
) -> ScriptOutcome:
    loop = asyncio.get_running_loop()
    collector = _Collector(loop)
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: collector,
            *_command(script),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=script.parent,
            env=_environment(request, context, home),
            start_new_session=True,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        # ValueError: an extra_env name or value the OS cannot take ("=" or NUL in it).
        return _failed(started, ScriptErrorCode.SPAWN_FAILED, f"could not start the script: {exc}")

    group = transport.get_pid()  # start_new_session: the leader's pid is the group id
    timed_out = False
    try:
        # uvloop's pipe transports have the methods of asyncio.WriteTransport but do not
        # subclass it: check for presence, not type.
        stdin = cast(asyncio.WriteTransport | None, transport.get_pipe_transport(0))
        if stdin is not None:
            # The pipe transport buffers what the script has not read yet, so this never
            # blocks; a script that exits without reading only breaks the pipe.
            try:
                stdin.write(context.encode())
                stdin.close()
            except (RuntimeError, OSError):
                # The script exited before reading its input (uvloop raises RuntimeError
                # on a closed pipe): a broken pipe, not a failure of the engine.
                pass
        if not await _settled(collector.exited, request.timeout_seconds):
            timed_out = True
            _signal_group(group, signal.SIGTERM)
            await _settled(collector.exited, TERM_GRACE_SECONDS)
        # After any exit, leftovers (a child sent to the background) go too: nothing of
        # the group outlives the attempt. SIGKILL also covers children that ignore SIGTERM.
        _signal_group(group, signal.SIGKILL)
        await _settled(collector.exited, KILL_WAIT_SECONDS)
        # The output is complete once every holder of the pipes is gone.
        if not await _settled(collector.pipes_closed, KILL_WAIT_SECONDS):
            log.warning(
                "a process of script %s (instance %s, step %s) left its process group and "
                "still holds its output pipes; reading stopped",
                request.run,
                request.instance_id,
                request.step_id,
            )
    except asyncio.CancelledError:
        # The engine is shutting down or gave up on the job: kill at once, no grace.
        _signal_group(group, signal.SIGKILL)
        await _settled(collector.exited, KILL_WAIT_SECONDS)
        raise
    finally:
        transport.close()

    stderr = json_values.storable_text(bytes(collector.stderr).decode("utf-8", errors="replace"))

    def failed(code: ScriptErrorCode, message: str, status: int | None = None) -> ScriptOutcome:
        return _failed(started, code, message, exit_status=status, stderr=stderr)

    if collector.stdout_overflow:
        return failed(
            ScriptErrorCode.OUTPUT_TOO_LARGE,
            f"printed more than {STDOUT_LIMIT // 1024} KiB on stdout and was stopped",
        )
    if timed_out:
        return failed(
            ScriptErrorCode.TIMEOUT,
            f"did not finish within {request.timeout_seconds:g} s and was stopped",
        )
    status = collector.exited.result() if collector.exited.done() else None
    if status is None:
        return failed(ScriptErrorCode.EXIT_STATUS, "did not exit, even after SIGKILL")
    if status != 0:
        return failed(ScriptErrorCode.EXIT_STATUS, _describe_status(status), status)
    outputs, problem = _parse_outputs(bytes(collector.stdout))
    if outputs is None:
        return failed(ScriptErrorCode.INVALID_OUTPUT, problem or "no outputs", status)
    return ScriptOutcome(
        ok=True,
        outputs=outputs,
        error_code=None,
        error_message=None,
        exit_status=0,
        stderr=stderr,
        duration_seconds=time.monotonic() - started,
    )


class _Collector(asyncio.SubprocessProtocol):
    """Reads stdout and stderr as they come, so neither pipe can fill up and stall."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stdout = bytearray()
        self.stdout_overflow = False
        self.stderr = bytearray()
        self.exited: asyncio.Future[int | None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open_pipes = {1, 2}
        self._transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's subprocess transport has the same methods but is not a subclass.
        self._transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        if fd == 2:
            self.stderr += chunk
            if len(self.stderr) > STDERR_LIMIT:
                del self.stderr[:-STDERR_LIMIT]
        elif fd == 1 and not self.stdout_overflow:
            self.stdout += chunk
            if len(self.stdout) > STDOUT_LIMIT:
                # Stop it now rather than buffer a runaway script's output until timeout.
                self.stdout_overflow = True
                self.stdout.clear()
                if self._transport is not None:
                    _signal_group(self._transport.get_pid(), signal.SIGKILL)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open_pipes.discard(fd)
        if not self._open_pipes and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            status = self._transport.get_returncode() if self._transport else None
            self.exited.set_result(status)


async def _settled(future: asyncio.Future[Any], timeout: float) -> bool:
    """Wait up to `timeout` seconds for `future`, without cancelling it; is it done?"""
    if not future.done() and timeout > 0:
        await asyncio.wait({future}, timeout=timeout)
    return future.done()


def _signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return  # the whole group is already gone: nothing left to stop
    except PermissionError:
        # Only when every process left in the group changed user (a setuid program).
        log.warning("cannot send %s to script process group %d", sig.name, group)


def _command(script: Path) -> list[str]:
    if script.suffix == ".py":
        # The engine's own interpreter: the same Python version and packages everywhere.
        return [sys.executable, str(script)]
    if script.suffix == ".sh":
        return [shutil.which("bash") or "/bin/bash", str(script)]
    return [str(script)]  # resolve_script checked the execute bit and the #! line


def _environment(request: ScriptRequest, context: str, home: str) -> dict[str, str]:
    """Built from scratch: the engine's own environment holds its secrets."""
    path = SAFE_PATH
    python_dir = str(Path(sys.executable).parent) if sys.executable else ""
    if python_dir and python_dir not in SAFE_PATH.split(":"):
        # First, so `#!/usr/bin/env python3` finds the engine's Python, as .py scripts do.
        path = f"{python_dir}:{SAFE_PATH}"
    env = {
        "PATH": path,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "HOME": home,
        "TMPDIR": home,
    }
    env.update(request.extra_env)
    # Last, so the context the script is told about is always the engine's.
    env.update(
        {
            _CONTEXT_VARIABLE: context,
            "OPENSOP_INSTANCE_ID": request.instance_id,
            "OPENSOP_STEP_ID": request.step_id,
            "OPENSOP_ATTEMPT": str(request.attempt),
            "OPENSOP_IDEMPOTENCY_KEY": request.idempotency_key,
        }
    )
    return env


def _has_shebang(script: Path) -> bool:
    try:
        with script.open("rb") as file:
            return file.read(2) == b"#!"
    except OSError:
        return False  # unreadable: no interpreter could read it either


def _describe_status(status: int) -> str:
    if status > 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"was killed by {name}"


def _parse_outputs(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object on stdout, or why there is none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"stdout is not UTF-8 ({exc.reason} at byte {exc.start})"
    if not text.strip():
        return None, "stdout is empty; the script must print a JSON object"
    try:
        value = json_values.loads(text)
    except (ValueError, RecursionError) as exc:
        # RecursionError: absurdly deep nesting; ValueError covers JSONDecodeError.
        return None, f"stdout is not a JSON object: {exc}"
    if not isinstance(value, dict):
        return None, f"stdout is {_json_kind(value)}, not a JSON object"
    if json_values.has_unstorable_text(value):
        return None, "stdout holds a NUL character or an unpaired surrogate, which no store keeps"
    return value, None


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    return "JSON null"


def _failed(
    started: float,
    code: ScriptErrorCode,
    message: str,
    *,
    exit_status: int | None = None,
    stderr: str = "",
) -> ScriptOutcome:
    return ScriptOutcome(
        ok=False,
        outputs=None,
        error_code=code,
        error_message=message,
        exit_status=exit_status,
        stderr=stderr,
        duration_seconds=time.monotonic() - started,
    )
