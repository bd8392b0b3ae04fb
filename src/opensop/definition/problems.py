"""What is wrong with a process file: a path, a stable code, a sentence, a position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PathTuple = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    path: str
    code: str
    message: str
    line: int | None = None
    column: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "code": self.code, "message": self.message}
        if self.line is not None:
            data["line"] = self.line
            data["column"] = self.column
        return data

    def render(self, filename: str) -> str:
        """``file:line:col: path: message`` as compilers print it."""
        where = filename
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        path = f" {self.path}:" if self.path else ""
        return f"{where}:{path} {self.message}"


class DefinitionError(Exception):
    """The file is not a valid process definition; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0].message if self.problems else "invalid definition"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)


def format_path(path: PathTuple) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass(frozen=True)
class RawProblem:
    """A problem whose path is still a tuple into the process mapping."""

    path: PathTuple
    code: str
    message: str
