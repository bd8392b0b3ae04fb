"""The script runner against real subprocesses: tiny scripts written into tmp_path.

Process checks read /proc (Linux): a zombie waiting to be reaped by init counts as dead.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from opensop.runtime.scripts import (
    KILL_WAIT_SECONDS,
    STDERR_LIMIT,
    STDOUT_LIMIT,
    ScriptErrorCode,
    ScriptOutcome,
    ScriptPathError,
    ScriptRequest,
    resolve_script,
    run_script,
)

ECHO_PY = "import json, sys\nprint(json.dumps({'got': json.load(sys.stdin)}))\n"


@pytest.fixture
def process_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "process"
    (folder / "steps").mkdir(parents=True)
    return folder


def write(folder: Path, name: str, text: str | bytes, *, executable: bool = False) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def request(process_dir: Path, run: str, **changes: Any) -> ScriptRequest:
    fields: dict[str, Any] = {
        "process_dir": process_dir,
        "run": run,
        "inputs": {"who": "Ada"},
        "instance_id": "01INSTANCE",
        "step_id": "score",
        "attempt": 2,
        "idempotency_key": "01INSTANCE:score:2",
        "timeout_seconds": 10.0,
    }
    fields.update(changes)
    return ScriptRequest(**fields)


def run(process_dir: Path, run: str, **changes: Any) -> ScriptOutcome:
    return asyncio.run(run_script(request(process_dir, run, **changes)))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def assert_all_dead(pids: Iterable[int], within: float = 2.0) -> None:
    """SIGKILL is sent before run_script returns; the kernel may take a moment to finish."""
    pids = list(pids)
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [pid for pid in pids if alive(pid)] == []


def read_pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()]


def test_error_codes_are_the_stable_strings() -> None:
    assert sorted(ScriptErrorCode) == sorted(
        [
            "script_not_found",
            "not_executable",
            "path_escape",
            "timeout",
            "exit_status",
            "invalid_output",
            "spawn_failed",
            "output_too_large",
        ]
    )


# --- running and outputs ---------------------------------------------------------------


def test_python_script_turns_inputs_into_outputs(process_dir: Path) -> None:
    write(process_dir, "steps/echo.py", ECHO_PY)
    outcome = run(process_dir, "steps/echo.py", inputs={"who": "Ada", "n": [1, 2.5, None]})
    assert outcome.ok, outcome
    assert outcome.outputs == {"got": {"who": "Ada", "n": [1, 2.5, None]}}
    assert (outcome.error_code, outcome.error_message, outcome.exit_status) == (None, None, 0)
    assert 0 < outcome.duration_seconds < 10


def test_unicode_inputs_arrive_as_utf8(process_dir: Path) -> None:
    write(process_dir, "steps/echo.py", ECHO_PY)
    outcome = run(process_dir, "steps/echo.py", inputs={"name": "Zoë 東京 🚀"})
    assert outcome.outputs == {"got": {"name": "Zoë 東京 🚀"}}


def test_shell_script_runs_with_bash_and_reads_stdin(process_dir: Path) -> None:
    # No execute bit and no shebang: .sh is run with bash.
    write(process_dir, "steps/cat.sh", 'input=$(cat)\necho "{\\"echo\\": $input}"\n')
    outcome = run(process_dir, "steps/cat.sh", inputs={"x": 1})
    assert outcome.ok, outcome
    assert outcome.outputs == {"echo": {"x": 1}}


def test_script_runs_in_its_own_folder(process_dir: Path) -> None:
    write(process_dir, "steps/data.txt", "hello")
    write(
        process_dir,
        "steps/cwd.py",
        "import json, os\nprint(json.dumps({'cwd': os.getcwd(), "
        "'data': open('data.txt').read()}))\n",
    )
    outcome = run(process_dir, "steps/cwd.py")
    assert outcome.outputs == {"cwd": str((process_dir / "steps").resolve()), "data": "hello"}


def test_executable_with_shebang_runs(process_dir: Path) -> None:
    write(process_dir, "steps/tool", f"#!{sys.executable}\n{ECHO_PY}", executable=True)
    outcome = run(process_dir, "steps/tool", inputs={"a": True})
    assert outcome.ok, outcome
    assert outcome.outputs == {"got": {"a": True}}


def test_sh_shebang_executable_runs(process_dir: Path) -> None:
    write(process_dir, "steps/tool", "#!/bin/sh\ncat\n", executable=True)
    assert run(process_dir, "steps/tool", inputs={"b": 2}).outputs == {"b": 2}


@pytest.mark.parametrize(
    ("text", "executable"),
    [
        pytest.param(f"#!{sys.executable}\n{ECHO_PY}", False, id="shebang-without-exec-bit"),
        pytest.param(ECHO_PY, True, id="exec-bit-without-shebang"),
    ],
)
def test_other_files_need_exec_bit_and_shebang(
    process_dir: Path, text: str, executable: bool
) -> None:
    write(process_dir, "steps/tool", text, executable=executable)
    outcome = run(process_dir, "steps/tool")
    assert not outcome.ok
    assert outcome.error_code == ScriptErrorCode.NOT_EXECUTABLE
    assert outcome.exit_status is None


def test_missing_shebang_interpreter_is_spawn_failed(process_dir: Path) -> None:
    write(process_dir, "steps/tool", "#!/no/such/interpreter\n", executable=True)
    outcome = run(process_dir, "steps/tool")
    assert outcome.error_code == ScriptErrorCode.SPAWN_FAILED
    assert outcome.error_message


def test_script_that_ignores_stdin_gets_large_inputs_without_trouble(process_dir: Path) -> None:
    # More than a pipe buffer (64 KiB), never read: must not block or crash.
    write(process_dir, "steps/deaf.py", "print('{}')\n")
    outcome = run(process_dir, "steps/deaf.py", inputs={"blob": "x" * 100_000})
    assert outcome.ok, outcome
    assert outcome.outputs == {}


def test_inputs_too_large_for_the_environment_are_spawn_failed(process_dir: Path) -> None:
    write(process_dir, "steps/echo.py", ECHO_PY)
    outcome = run(process_dir, "steps/echo.py", inputs={"blob": "x" * 200_000})
    assert outcome.error_code == ScriptErrorCode.SPAWN_FAILED
    assert "OPENSOP_CONTEXT" in (outcome.error_message or "")


def test_inputs_that_are_not_json_are_the_callers_mistake(process_dir: Path) -> None:
    write(process_dir, "steps/echo.py", ECHO_PY)
    with pytest.raises(ValueError):
        run(process_dir, "steps/echo.py", inputs={"x": float("nan")})


# --- failures -------------------------------------------------------------------------


def test_non_zero_exit_reports_status_and_stderr(process_dir: Path) -> None:
    write(
        process_dir,
        "steps/fail.py",
        "import sys\nprint('{\"partial\": 1}')\nprint('boom: bad score', file=sys.stderr)\n"
        "sys.exit(3)\n",
    )
    outcome = run(process_dir, "steps/fail.py")
    assert not outcome.ok
    assert outcome.error_code == ScriptErrorCode.EXIT_STATUS
    assert outcome.error_message == "exited with status 3"
    assert outcome.exit_status == 3
    assert outcome.outputs is None
    assert "boom: bad score" in outcome.stderr


def test_death_by_signal_is_named(process_dir: Path) -> None:
    write(process_dir, "steps/segv.sh", "kill -SEGV $$\n")
    outcome = run(process_dir, "steps/segv.sh")
    assert outcome.error_code == ScriptErrorCode.EXIT_STATUS
    assert outcome.exit_status == -11
    assert outcome.error_message == "was killed by SIGSEGV"


@pytest.mark.parametrize(
    ("stdout", "reason"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"  \n", "empty", id="blank"),
        pytest.param(b"not json", "not a JSON object", id="invalid"),
        pytest.param(b"[1, 2]", "array", id="list"),
        pytest.param(b'"text"', "string", id="string"),
        pytest.param(b"42", "number", id="number"),
        pytest.param(b"null", "null", id="null"),
        pytest.param(b"NaN", "NaN", id="nan"),
        pytest.param(b'{"score": Infinity}', "Infinity", id="infinity-inside"),
        pytest.param(b'{"a": 1}{"b": 2}', "not a JSON object", id="two-objects"),
        pytest.param(b'{"a": "\xff\xfe"}', "not UTF-8", id="not-utf8"),
        pytest.param(b"[" * 100_000, "not a JSON object", id="deep-nesting"),
    ],
)
def test_exit_zero_without_a_json_object_is_invalid_output(
    process_dir: Path, stdout: bytes, reason: str
) -> None:
    write(process_dir, "steps/out.bin", stdout)
    write(
        process_dir,
        "steps/print.py",
        "import sys\nsys.stdout.buffer.write(open('out.bin', 'rb').read())\n",
    )
    outcome = run(process_dir, "steps/print.py")
    assert not outcome.ok
    assert outcome.error_code == ScriptErrorCode.INVALID_OUTPUT
    assert outcome.exit_status == 0
    assert reason in (outcome.error_message or "")


def test_stderr_keeps_the_tail(process_dir: Path) -> None:
    write(
        process_dir,
        "steps/noisy.py",
        "import sys\nsys.stderr.write('head' + 'x' * 200_000 + 'THE-END')\nprint('{}')\n",
    )
    outcome = run(process_dir, "steps/noisy.py")
    assert outcome.ok
    assert len(outcome.stderr.encode()) == STDERR_LIMIT
    assert outcome.stderr.endswith("THE-END")
    assert "head" not in outcome.stderr


def test_huge_stdout_is_output_too_large_and_stopped(process_dir: Path) -> None:
    write(
        process_dir,
        "steps/flood.py",
        "import sys, time\nsys.stdout.write('[' + 'x' * (2 * 1024 * 1024))\n"
        "sys.stdout.flush()\ntime.sleep(30)\n",
    )
    outcome = run(process_dir, "steps/flood.py", timeout_seconds=8.0)
    assert outcome.error_code == ScriptErrorCode.OUTPUT_TOO_LARGE
    assert str(STDOUT_LIMIT // 1024) in (outcome.error_message or "")
    assert outcome.duration_seconds < 5  # stopped at the limit, not at the timeout


def test_stdout_at_the_limit_is_accepted(process_dir: Path) -> None:
    write(
        process_dir,
        "steps/big.py",
        "import sys\nbody = '{\"s\": \"' \nsys.stdout.write(body + 'x' * "
        f"({STDOUT_LIMIT} - len(body) - 2) + '\"}}')\n",
    )
    outcome = run(process_dir, "steps/big.py")
    assert outcome.ok, outcome.error_message
    assert outcome.outputs is not None
    assert len(outcome.outputs["s"]) == STDOUT_LIMIT - 9


# --- environment ----------------------------------------------------------------------


def test_environment_is_built_from_scratch(
    process_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSOP_API_TOKEN", "secret-token")
    monkeypatch.setenv("OPENSOP_DATABASE_URL", "postgresql://u:secret@db/opensop")
    monkeypatch.setenv("SOMETHING_ELSE", "engine-only")
    write(
        process_dir,
        "steps/env.py",
        "import json, os, sys\n"
        "print(json.dumps({'env': dict(os.environ), 'stdin': sys.stdin.read()}))\n",
    )
    outcome = run(
        process_dir,
        "steps/env.py",
        inputs={"who": "Ada", "n": 1},
        extra_env={"CUSTOMER_REGION": "eu", "OPENSOP_STEP_ID": "forged"},
    )
    assert outcome.ok, outcome
    assert outcome.outputs is not None
    env: dict[str, str] = outcome.outputs["env"]
    assert set(env) == {
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "HOME",
        "TMPDIR",
        "CUSTOMER_REGION",
        "OPENSOP_CONTEXT",
        "OPENSOP_INSTANCE_ID",
        "OPENSOP_STEP_ID",
        "OPENSOP_ATTEMPT",
        "OPENSOP_IDEMPOTENCY_KEY",
    }
    assert "secret" not in json.dumps(env)
    assert json.loads(env["OPENSOP_CONTEXT"]) == {"who": "Ada", "n": 1}
    assert env["OPENSOP_CONTEXT"] == outcome.outputs["stdin"]
    assert env["OPENSOP_INSTANCE_ID"] == "01INSTANCE"
    assert env["OPENSOP_STEP_ID"] == "score"  # extra_env cannot forge the context
    assert env["OPENSOP_ATTEMPT"] == "2"
    assert env["OPENSOP_IDEMPOTENCY_KEY"] == "01INSTANCE:score:2"
    assert env["CUSTOMER_REGION"] == "eu"
    assert (env["LANG"], env["LC_ALL"], env["TZ"]) == ("C.UTF-8", "C.UTF-8", "UTC")
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["PATH"].endswith("/usr/local/bin:/usr/bin:/bin")
    assert not Path(env["HOME"]).exists()  # a fresh home per attempt, removed afterwards


def test_bash_script_does_not_see_engine_secrets(
    process_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSOP_API_TOKEN", "secret-token")
    write(process_dir, "steps/env.sh", 'echo "{\\"token\\": \\"${OPENSOP_API_TOKEN:-}\\"}"\n')
    assert run(process_dir, "steps/env.sh").outputs == {"token": ""}


def test_bad_extra_env_is_spawn_failed(process_dir: Path) -> None:
    write(process_dir, "steps/echo.py", ECHO_PY)
    outcome = run(process_dir, "steps/echo.py", extra_env={"A=B": "x"})
    assert outcome.error_code == ScriptErrorCode.SPAWN_FAILED


# --- paths ----------------------------------------------------------------------------


def test_path_escapes_are_refused(process_dir: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "outside.py", "print('{\"escaped\": true}')\n")
    (process_dir / "steps" / "link.py").symlink_to(outside)
    (process_dir / "linked-dir").symlink_to(tmp_path)
    for run_path in [
        "../outside.py",
        "steps/../../outside.py",
        str(outside),
        "steps/link.py",
        "linked-dir/outside.py",
        "../nothing-here.py",  # refused before existence: no probing outside the folder
    ]:
        outcome = run(process_dir, run_path)
        assert outcome.error_code == ScriptErrorCode.PATH_ESCAPE, run_path
        with pytest.raises(ScriptPathError) as caught:
            resolve_script(process_dir, run_path)
        assert caught.value.code == ScriptErrorCode.PATH_ESCAPE


def test_symlink_inside_the_folder_is_fine(process_dir: Path) -> None:
    target = write(process_dir, "lib/echo.py", ECHO_PY)
    (process_dir / "steps" / "echo.py").symlink_to(target)
    assert resolve_script(process_dir, "steps/echo.py") == target.resolve()
    assert run(process_dir, "steps/echo.py", inputs={"k": 1}).outputs == {"got": {"k": 1}}


@pytest.mark.parametrize("run_path", ["steps/missing.py", "steps", "", "steps/loop.py"])
def test_missing_script_is_script_not_found(process_dir: Path, run_path: str) -> None:
    (process_dir / "steps" / "loop.py").symlink_to(process_dir / "steps" / "loop.py")
    outcome = run(process_dir, run_path)
    assert outcome.error_code == ScriptErrorCode.SCRIPT_NOT_FOUND
    assert outcome.exit_status is None


def test_resolve_script_returns_the_absolute_path(process_dir: Path) -> None:
    script = write(process_dir, "steps/echo.py", ECHO_PY)
    assert resolve_script(process_dir, "steps/./echo.py") == script.resolve()


# --- processes never outlive the attempt ----------------------------------------------

GRANDCHILD_PY = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
open("pids.tmp", "w").write(f"{os.getpid()} {child.pid}")
os.rename("pids.tmp", "pids")
time.sleep(30)
"""

# Ignores SIGTERM (and so do its children, which inherit the ignored disposition).
GRANDCHILD_SH = """\
trap '' TERM
sleep 30 &
echo "$$ $!" > pids.tmp && mv pids.tmp pids
sleep 30
"""


@pytest.mark.parametrize(
    ("name", "text"),
    [("steps/hang.py", GRANDCHILD_PY), ("steps/hang.sh", GRANDCHILD_SH)],
    ids=["python", "bash-ignoring-sigterm"],
)
def test_timeout_kills_the_whole_group(process_dir: Path, name: str, text: str) -> None:
    write(process_dir, name, text)
    outcome = run(process_dir, name, timeout_seconds=0.8)
    assert outcome.error_code == ScriptErrorCode.TIMEOUT
    assert outcome.error_message == "did not finish within 0.8 s and was stopped"
    assert outcome.exit_status is None
    assert 0.8 <= outcome.duration_seconds < 5
    assert_all_dead(read_pids(process_dir / "steps" / "pids"))


@pytest.mark.parametrize(
    "background",
    ["sleep 30 &", "sleep 30 >/dev/null 2>&1 </dev/null &"],
    ids=["holding-the-pipes", "detached-from-the-pipes"],
)
def test_children_left_behind_after_exit_are_killed(process_dir: Path, background: str) -> None:
    write(process_dir, "steps/bg.sh", f"{background}\necho $! > child\necho '{{\"ok\": 1}}'\n")
    outcome = run(process_dir, "steps/bg.sh")
    assert outcome.ok, outcome
    assert outcome.outputs == {"ok": 1}
    assert outcome.duration_seconds < 5
    assert_all_dead(read_pids(process_dir / "steps" / "child"))


def test_a_process_that_left_the_group_cannot_hang_the_runner(
    process_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # setsid takes it out of our reach, still holding stdout; we stop reading, not hang.
    write(
        process_dir,
        "steps/escape.py",
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], "
        "start_new_session=True)\n"
        "open('escaped', 'w').write(str(child.pid))\n"
        "print('{\"done\": true}')\n",
    )
    try:
        outcome = run(process_dir, "steps/escape.py")
        assert outcome.ok, outcome
        assert outcome.outputs == {"done": True}
        assert outcome.duration_seconds < KILL_WAIT_SECONDS + 2
        assert "left its process group" in caplog.text
    finally:
        escaped = process_dir / "steps" / "escaped"
        if escaped.exists():
            os.kill(int(escaped.read_text()), signal.SIGKILL)


def test_cancelling_the_task_kills_the_group(process_dir: Path) -> None:
    write(process_dir, "steps/hang.py", GRANDCHILD_PY)
    pids_file = process_dir / "steps" / "pids"

    async def cancel_when_started() -> None:
        task = asyncio.create_task(run_script(request(process_dir, "steps/hang.py")))
        deadline = time.monotonic() + 5
        while not pids_file.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(cancel_when_started())
    assert time.monotonic() - started < 5
    assert_all_dead(read_pids(pids_file))


def test_concurrent_runs_do_not_mix_up(process_dir: Path) -> None:
    write(process_dir, "steps/echo.py", ECHO_PY)

    async def many() -> list[ScriptOutcome]:
        return await asyncio.gather(
            *(
                run_script(request(process_dir, "steps/echo.py", inputs={"i": i}, step_id=f"s{i}"))
                for i in range(20)
            )
        )

    outcomes = asyncio.run(many())
    assert [outcome.outputs for outcome in outcomes] == [{"got": {"i": i}} for i in range(20)]


@pytest.mark.parametrize(
    "printed",
    ['{"a": "x\\u0000y"}', '{"a\\u0000": 1}', '{"a": "\\ud800"}', '{"a": 1e999}'],
    ids=["nul-value", "nul-key", "lone-surrogate", "infinite-number"],
)
def test_outputs_no_store_can_keep_are_invalid_output(process_dir: Path, printed: str) -> None:
    write(process_dir, "steps/odd.py", f"import sys\nsys.stdout.write({printed!r})\n")

    outcome = run(process_dir, "steps/odd.py")

    assert not outcome.ok
    assert outcome.error_code == ScriptErrorCode.INVALID_OUTPUT


def test_nul_bytes_on_stderr_are_kept_as_replacement_characters(process_dir: Path) -> None:
    script = "import sys\nsys.stderr.write('a\\x00b')\nprint('{}')\n"
    write(process_dir, "steps/nul.py", script)

    outcome = run(process_dir, "steps/nul.py")

    assert outcome.ok
    assert outcome.stderr == "a\ufffdb"
