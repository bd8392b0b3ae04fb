"""`opensop validate` and `opensop schema`, run as a user runs them: a real subprocess.

The few commands run once per module, all at the same time (each costs ~0.5 s of start-up);
the tests then read their exit codes and output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.reference import REFERENCE_DIR

from opensop.definition.schema import packaged_schema_text

REFERENCE_FILE = REFERENCE_DIR / "morning-briefing.sop.yaml"
COMPILER_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<path>\S+): .+$")

FILES = {
    "good.sop.yaml": 'name: demo\nversion: "1"\nsteps:\n  - {id: ask, type: form}\n',
    "good.sop.json": json.dumps(
        {
            "opensop": "0.2",
            "process": {
                "name": "demo-json",
                "version": "2.0",
                "steps": [
                    {"id": "ask", "type": "form"},
                    {"id": "pause", "type": "wait", "wait": {"seconds": 5}},
                ],
            },
        },
        indent=2,
    ),
    "bad.sop.yaml": (
        'name: demo\nversion: "1"\nsteps:\n'
        "  - id: ask\n    type: form\n"
        "  - id: call\n    type: frm\n"
        "  - id: later\n    type: form\n    timout: 1h\n"
    ),
    "shell.sop.yaml": (
        'name: demo\nversion: "1"\nsteps:\n  - {id: ask, type: form}\n'
        "  - {id: say, type: shell, run: echo hi}\n"
    ),
}
BAD_LINES = [
    "bad.sop.yaml:7:5: steps[1].type: unknown type 'frm'; did you mean 'form'?",
    "bad.sop.yaml:10:5: steps[2].timout: unknown key 'timout'; did you mean 'timeout'?",
]


def opensop_command() -> list[str]:
    """The `opensop` entry point beside this interpreter, else `python -m opensop.cli.main`."""
    script = Path(sys.executable).with_name("opensop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "opensop.cli.main"]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# Every command the tests read, started at once (CLI start-up is ~0.5 s of imports).
VALIDATE_OK = ("validate", "--local", "good.sop.yaml", "good.sop.json", "shell.sop.yaml",
               str(REFERENCE_FILE))  # fmt: skip
VALIDATE_MIXED = ("validate", "good.sop.yaml", "missing.sop.yaml", "bad.sop.yaml", "shell.sop.yaml")
JSON_ONE = ("validate", "--json", "good.sop.json")
JSON_MANY = ("validate", "--json", "good.sop.yaml", "bad.sop.yaml", "missing.sop.yaml")
SCHEMA = ("schema", "--format", "json-schema")
COMMANDS = (VALIDATE_OK, VALIDATE_MIXED, JSON_ONE, JSON_MANY, SCHEMA)


@pytest.fixture(scope="module")
def runs(workdir: Path) -> dict[tuple[str, ...], Run]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSOP_")}
    env["PYTHONIOENCODING"] = "utf-8"
    started = {
        args: subprocess.Popen(
            [*opensop_command(), *args],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
        )
        for args in COMMANDS
    }
    done: dict[tuple[str, ...], Run] = {}
    try:
        for args, process in started.items():
            out, err = process.communicate(timeout=60)
            done[args] = Run(process.returncode, out, err)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return done


# --- text output ----------------------------------------------------------------------------

SHELL_REFUSED = (
    "shell.sop.yaml:5:15: steps[1].type: 'shell' steps run only in the local CLI; "
    "a server refuses them"
)


def test_valid_files_exit_0_with_one_summary_line_each(runs: dict[tuple[str, ...], Run]) -> None:
    run = runs[VALIDATE_OK]
    assert (run.code, run.err) == (0, "")
    assert run.lines == [
        "good.sop.yaml: ok — demo 1, 1 steps, trigger api",
        "good.sop.json: ok — demo-json 2.0, 2 steps, trigger api",
        "shell.sop.yaml: ok — demo 1, 2 steps, trigger api",  # --local allows shell
        f"{REFERENCE_FILE}: ok — morning-briefing 1.0, 5 steps, trigger schedule",
    ]


def test_any_invalid_file_exits_1_and_every_file_is_reported(
    runs: dict[tuple[str, ...], Run],
) -> None:
    run = runs[VALIDATE_MIXED]
    assert (run.code, run.err) == (1, "")
    assert run.lines == [
        "good.sop.yaml: ok — demo 1, 1 steps, trigger api",
        "missing.sop.yaml: cannot read the file: No such file or directory",
        *BAD_LINES,
        SHELL_REFUSED,  # no --local: the server profile
    ]


def test_problem_lines_read_file_line_column_path_message(
    runs: dict[tuple[str, ...], Run],
) -> None:
    problem_lines = [line for line in runs[VALIDATE_MIXED].lines if line.startswith(("bad", "sh"))]
    assert len(problem_lines) == 3
    for line in problem_lines:
        match = COMPILER_LINE.match(line)
        assert match, line
        assert match["file"] in ("bad.sop.yaml", "shell.sop.yaml")


# --- JSON output ----------------------------------------------------------------------------


def test_json_for_one_valid_file_is_the_normalized_definition(
    runs: dict[tuple[str, ...], Run],
) -> None:
    run = runs[JSON_ONE]
    assert (run.code, run.err) == (0, "")
    result = run.json()
    assert (result["file"], result["valid"]) == ("good.sop.json", True)
    assert "errors" not in result
    definition = result["definition"]
    assert (definition["opensop"], definition["name"], definition["version"]) == (
        "0.2",
        "demo-json",
        "2.0",
    )
    assert [step["type"] for step in definition["steps"]] == ["form", "wait"]


def test_json_for_several_files_is_a_list(runs: dict[tuple[str, ...], Run]) -> None:
    run = runs[JSON_MANY]
    assert (run.code, run.err) == (1, "")
    good, bad, missing = run.json()
    assert (good["file"], good["valid"], good["definition"]["name"]) == (
        "good.sop.yaml",
        True,
        "demo",
    )
    assert (bad["file"], bad["valid"]) == ("bad.sop.yaml", False)
    assert "definition" not in bad
    assert bad["errors"] == [
        {
            "path": "steps[1].type",
            "code": "unknown_step_type",
            "message": "unknown type 'frm'; did you mean 'form'?",
            "line": 7,
            "column": 5,
        },
        {
            "path": "steps[2].timout",
            "code": "unknown_key",
            "message": "unknown key 'timout'; did you mean 'timeout'?",
            "line": 10,
            "column": 5,
        },
    ]
    assert (missing["file"], missing["valid"]) == ("missing.sop.yaml", False)
    assert [error["code"] for error in missing["errors"]] == ["unreadable_file"]


# --- schema ---------------------------------------------------------------------------------


def test_schema_prints_the_packaged_json_schema(runs: dict[tuple[str, ...], Run]) -> None:
    run = runs[SCHEMA]
    assert (run.code, run.err) == (0, "")
    assert run.out == packaged_schema_text()
    assert json.loads(run.out)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
