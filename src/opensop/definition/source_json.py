"""JSON to plain data, within the same limits and with the same locator as YAML.

JSON goes through the json module after one linear token scan (``_JsonScan``) that bounds
depth and size first and records where each key and item starts, since json itself keeps
no positions. NaN and Infinity are refused, duplicate keys reported, and lone surrogates
from ``\\ud800`` escapes caught after parsing.

``load_json`` is called by ``opensop.definition.source.load_source``.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from opensop.definition.source_document import NodeLocation
from opensop.definition.source_problems import (
    SURROGATE,
    NumberTooLong,
    ProblemCode,
    Problems,
    SourceLimits,
    SourceProblem,
    utf8_size,
    value_too_large_message,
)
from opensop.definition.text import SourceFloat, SourceInt

__all__ = ["load_json"]

# Possessive quantifiers: an unterminated string fails in one pass instead of backtracking.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}:,]|[^\s\[\]{}:,"]+|"', re.DOTALL)
_JSON_SPACE = re.compile(r"\s*")
_JSON_CONSTANTS = frozenset({"NaN", "Infinity", "-Infinity"})


class _JsonFrame:
    __slots__ = ("expect_value", "index", "is_map", "key", "loc")

    def __init__(self, is_map: bool, loc: NodeLocation) -> None:
        self.is_map = is_map
        self.loc = loc
        self.index = 0
        self.expect_value = False
        self.key: str | None = None


class _JsonScan:
    """One linear pass over the tokens, before ``json`` runs.

    It refuses nesting and sizes the json module would spend recursion or memory on, and
    records where each key and item starts (json itself keeps no positions). It assumes
    valid JSON; on anything else it may stop early or misplace a position, and
    json.loads then reports the real syntax error.
    """

    def __init__(self, text: str, limits: SourceLimits, problems: Problems) -> None:
        self.limits = limits
        self.root: NodeLocation | None = None
        self.findings: list[SourceProblem] = []  # reported only if json.loads succeeds
        self.constant_at: tuple[int, int] | None = None
        self.long_number_at: tuple[int, int] | None = None
        stack: list[_JsonFrame] = []
        nodes = punctuation = 0
        line, line_start, last = 1, 0, 0
        pos = _skip_space(text, 0)
        while pos < len(text):
            match = _JSON_TOKEN.match(text, pos)
            if match is None or match.group() == '"':
                break  # unterminated string
            token = match.group()
            breaks = text.count("\n", last, pos)
            if breaks:
                line += breaks
                line_start = text.rfind("\n", last, pos) + 1
            last = pos
            column = pos - line_start + 1
            pos = _skip_space(text, match.end())
            top = stack[-1] if stack else None
            first = token[0]
            if first in "]},:":
                # Valid JSON has at most one ',', ':' and closer per value; more is garbage
                # that json.loads will refuse, so stop spending time on it.
                punctuation += 1
                if punctuation > 3 * nodes + 3:
                    break
                if first in "]}":
                    if stack:
                        stack.pop()
                elif top is not None:
                    top.expect_value = first == ":"
                    top.index += first == ","
                continue
            nodes += 1
            if nodes > limits.max_nodes:
                message = f"the document has more than {limits.max_nodes:,} values"
                problems.fatal(ProblemCode.TOO_MANY_NODES, message, line, column)
            if first == '"':
                self._check_size(token, line, column)
            if top is not None and top.is_map and not top.expect_value:
                self._key(top, token, line, column)
                continue
            loc = NodeLocation(line, column, {} if first in "[{" else None)
            if first in "[{":
                if len(stack) >= limits.max_depth:
                    message = f"nesting is deeper than {limits.max_depth} levels"
                    problems.fatal(ProblemCode.TOO_DEEP, message, line, column)
                stack.append(_JsonFrame(first == "{", loc))
            elif token in _JSON_CONSTANTS:
                self.constant_at = self.constant_at or (line, column)
            elif first != '"' and len(token) > limits.max_number_chars:
                self.long_number_at = self.long_number_at or (line, column)
                message = f"a number is longer than {limits.max_number_chars} characters"
                self.findings.append(
                    SourceProblem(ProblemCode.VALUE_TOO_LARGE, message, line, column)
                )
            self._place(top, loc)

    def _check_size(self, token: str, line: int, column: int) -> None:
        if utf8_size(token) - 2 <= self.limits.max_scalar_bytes:
            return
        try:  # escapes make the text longer than the value; measure the value
            value = json.loads(token)
        except ValueError:
            return
        if utf8_size(value) > self.limits.max_scalar_bytes:
            message = value_too_large_message(self.limits)
            self.findings.append(SourceProblem(ProblemCode.VALUE_TOO_LARGE, message, line, column))

    def _key(self, frame: _JsonFrame, token: str, line: int, column: int) -> None:
        frame.key = None
        try:
            key = json.loads(token)
        except ValueError:
            return
        if not isinstance(key, str):
            return
        children = frame.loc.children
        assert children is not None
        first = children.get(key)
        if first is not None:
            message = f"duplicate key {key!r} (first defined on line {first.line})"
            self.findings.append(SourceProblem(ProblemCode.DUPLICATE_KEY, message, line, column))
            return
        children[key] = NodeLocation(line, column, None)
        frame.key = key

    def _place(self, parent: _JsonFrame | None, loc: NodeLocation) -> None:
        if parent is None:
            self.root = self.root or loc
            return
        children = parent.loc.children
        assert children is not None
        if not parent.is_map:
            children[parent.index] = loc
        elif parent.key is not None:
            children[parent.key].children = loc.children  # the entry keeps the key's position


def _skip_space(text: str, pos: int) -> int:
    match = _JSON_SPACE.match(text, pos)
    return match.end() if match else pos


class _Refused(Exception):
    """NaN or Infinity met by json.loads."""


def load_json(
    text: str, limits: SourceLimits, problems: Problems
) -> tuple[Any, NodeLocation | None]:
    """The plain data and location tree of one JSON document; problems go to ``problems``."""
    if not text.strip():
        problems.fatal(ProblemCode.EMPTY_DOCUMENT, "the document is empty", 1, 1)
    scan = _JsonScan(text, limits, problems)
    duplicate_keys: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicate_keys.append(key)
            else:
                out[key] = value
        return out

    def constant(name: str) -> NoReturn:
        raise _Refused(name)

    def integer(digits: str) -> int:
        if len(digits) > limits.max_number_chars:  # int() refuses > 4300 digits anyway
            raise NumberTooLong
        return SourceInt(int(digits), digits)

    def decimal(digits: str) -> float:
        # Keep the text, as YAML does: `"version": 1.10` must stay "1.10", never 1.1.
        if len(digits) > limits.max_number_chars:
            raise NumberTooLong
        return SourceFloat(float(digits), digits)

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=constant,
            parse_int=integer,
            parse_float=decimal,
        )
    except json.JSONDecodeError as exc:
        problems.fatal(ProblemCode.SYNTAX_ERROR, exc.msg, exc.lineno, exc.colno)
    except _Refused as exc:
        message = f"{exc} is not a valid JSON number"
        problems.fatal(ProblemCode.SYNTAX_ERROR, message, *(scan.constant_at or (None, None)))
    except NumberTooLong:
        message = f"a number is longer than {limits.max_number_chars} characters"
        where = scan.long_number_at or (None, None)
        problems.fatal(ProblemCode.VALUE_TOO_LARGE, message, *where)
    except RecursionError:  # the scan's depth check comes first; this is a backstop
        message = f"nesting is deeper than {limits.max_depth} levels"
        problems.fatal(ProblemCode.TOO_DEEP, message)
    except ValueError as exc:
        problems.fatal(ProblemCode.SYNTAX_ERROR, f"invalid JSON: {exc}")
    if not isinstance(value, dict):
        line, column = (scan.root.line, scan.root.column) if scan.root else (1, 1)
        message = "the top level must be a mapping of keys"
        problems.fatal(ProblemCode.NOT_A_MAPPING, message, line, column)
    for problem in scan.findings:
        problems.add(ProblemCode(problem.code), problem.message, problem.line, problem.column)
    if duplicate_keys and not any(p.code == ProblemCode.DUPLICATE_KEY for p in scan.findings):
        for key in duplicate_keys:  # the scan should have placed them; never stay silent
            problems.add(ProblemCode.DUPLICATE_KEY, f"duplicate key {key!r}", None, None)
    _check_surrogates(value, problems)
    return value, scan.root


def _check_surrogates(value: Any, problems: Problems) -> None:
    """Iterative walk: a "\\ud800" escape decodes to a string nothing can store."""
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and SURROGATE.search(item):
                message = "a string contains a lone surrogate"
                problems.add(ProblemCode.INVALID_ENCODING, message, None, None)
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
