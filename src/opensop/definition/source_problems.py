"""What can go wrong reading a process file, and the bounds that decide it.

``SourceLimits`` fixes the budget a file may spend (bytes, depth, nodes, scalar and number
sizes, alias expansion); ``ProblemCode`` names every way a file can be refused;
``SourceProblem`` is one such finding with its line and column, and ``SourceError``
carries them all to the caller. ``Problems`` is the collector the readers share: it keeps
recoverable problems, raises ``Abort`` on a fatal one, and stops after ``max_problems``.
The public names are re-exported by ``opensop.definition.source``; import them from there.
(These are problems of reading the file; ``problems.Problem`` is what validation reports.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

__all__ = [
    "DEFAULT_LIMITS",
    "KIB",
    "MIB",
    "SURROGATE",
    "Abort",
    "NumberTooLong",
    "ProblemCode",
    "Problems",
    "SourceError",
    "SourceLimits",
    "SourceProblem",
    "utf8_size",
    "value_too_large_message",
]

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class SourceLimits:
    """Bounds that make memory and time proportional to a small, fixed budget."""

    max_bytes: int = 1 * MIB  # whole file, checked before any parsing
    max_depth: int = 64  # nested mappings/sequences; real processes use < 10
    max_nodes: int = 100_000  # every key, value and item, aliases counted at full size
    max_scalar_bytes: int = 256 * KIB  # one string (a prompt or a template)
    max_number_chars: int = 100  # int() of huge digit strings is slow and str() refuses
    # Aliases can repeat one big string many times; sharing costs nothing here, but
    # whoever serialises the result later would pay for every copy.
    max_expanded_chars: int = 4 * MIB
    max_problems: int = 20  # report several mistakes at once, but not ten thousand


DEFAULT_LIMITS = SourceLimits()


class ProblemCode(StrEnum):
    """Stable codes of ``SourceProblem``; later layers and clients key on them."""

    FILE_TOO_LARGE = "file_too_large"  # over max_bytes; nothing was parsed
    INVALID_ENCODING = "invalid_encoding"  # not UTF-8 (or UTF-16/32 with a BOM)
    SYNTAX_ERROR = "syntax_error"  # YAML/JSON grammar, control characters, NaN in JSON
    EMPTY_DOCUMENT = "empty_document"  # nothing but whitespace and comments
    MULTIPLE_DOCUMENTS = "multiple_documents"  # a second `---` document
    NOT_A_MAPPING = "not_a_mapping"  # top level is a list or a scalar
    TOO_DEEP = "too_deep"  # nesting over max_depth
    TOO_MANY_NODES = "too_many_nodes"  # over max_nodes after alias expansion
    EXPANSION_TOO_LARGE = "expansion_too_large"  # aliases repeat over max_expanded_chars
    VALUE_TOO_LARGE = "value_too_large"  # a scalar or number literal over its limit
    UNSUPPORTED_TAG = "unsupported_tag"  # any tag but the core str/int/float/bool/null/map/seq
    INVALID_VALUE = "invalid_value"  # a core tag on text it cannot mean (`!!int abc`)
    INVALID_KEY = "invalid_key"  # a mapping or sequence used as a key
    DUPLICATE_KEY = "duplicate_key"  # the same key twice in one mapping
    UNSUPPORTED_MERGE_KEY = "unsupported_merge_key"  # `<<: *defaults`
    UNDEFINED_ALIAS = "undefined_alias"  # `*name` without an earlier `&name`
    TOO_MANY_PROBLEMS = "too_many_problems"  # stopped reporting at max_problems


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """One thing wrong with the file; line and column are 1-based when known."""

    code: str
    message: str
    line: int | None = None
    column: int | None = None

    def format(self, filename: str = "<string>") -> str:
        where = filename
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "line": self.line,
            "column": self.column,
        }


class SourceError(Exception):
    """The file could not be read as plain data; ``problems`` lists why, in file order."""

    def __init__(self, problems: list[SourceProblem], *, filename: str = "<string>") -> None:
        self.problems = list(problems)
        self.filename = filename
        super().__init__("\n".join(p.format(filename) for p in self.problems))


class Abort(Exception):
    """Stop reading: a fatal problem was recorded."""


class Problems:
    """The problems found so far; a fatal one, or one too many, ends the reading."""

    def __init__(self, limits: SourceLimits) -> None:
        self.items: list[SourceProblem] = []
        self.limit = limits.max_problems

    def add(self, code: ProblemCode, message: str, line: int | None, column: int | None) -> None:
        if len(self.items) >= self.limit:
            message = f"more than {self.limit} problems; stopped reading here"
            self.fatal(ProblemCode.TOO_MANY_PROBLEMS, message, line, column)
        self.items.append(SourceProblem(code, message, line, column))

    def fatal(
        self, code: ProblemCode, message: str, line: int | None = None, column: int | None = None
    ) -> NoReturn:
        self.items.append(SourceProblem(code, message, line, column))
        raise Abort


class NumberTooLong(Exception):
    """A number literal over max_number_chars."""


# A lone surrogate can only come from a str argument or an escape; nothing can store it.
SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_size(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def value_too_large_message(limits: SourceLimits) -> str:
    return f"a value is larger than {limits.max_scalar_bytes // KIB:,} KiB"
