"""YAML to plain data: an event-level tree builder with core-schema scalars and a locator.

The tree is built from parser events with an explicit stack, so depth, node count and
alias expansion are checked while reading and no input can cause a RecursionError.

- Scalars resolve by the YAML 1.2 core schema: only true/false spellings are booleans,
  ``yes``/``on``/``2024-01-01`` stay strings, ``0777`` is decimal 777 (text kept).
- Only the standard str/int/float/bool/null/map/seq tags are accepted; no object is ever
  constructed from a tag.
- Merge keys (``<<``) are refused (``unsupported_merge_key``).
- An alias shares the anchored subtree (no copy) but counts its full size against the
  node limit, so alias bombs are refused before they cost anything.
- Parser errors are reworded for someone editing a process file (``_syntax_problem``).

``load_yaml`` is called by ``opensop.definition.source.load_source``, which passes the
loader class so that ``source.YAML_LOADER`` stays the one switch between libyaml and the
pure-Python parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from opensop.definition.source_document import NodeLocation
from opensop.definition.source_problems import (
    SURROGATE,
    NumberTooLong,
    ProblemCode,
    Problems,
    SourceLimits,
    utf8_size,
    value_too_large_message,
)
from opensop.definition.text import SourceFloat, SourceInt

__all__ = ["YamlLoader", "load_yaml"]

YamlLoader = type[yaml.SafeLoader] | type[yaml.CSafeLoader]


def _check_string(
    value: str, limits: SourceLimits, problems: Problems, line: int | None, column: int | None
) -> bool:
    """False (and a problem recorded) when a string is too large or not encodable."""
    if utf8_size(value) > limits.max_scalar_bytes:
        problems.add(ProblemCode.VALUE_TOO_LARGE, value_too_large_message(limits), line, column)
        return False
    # Escapes like "\ud800" make strings that no database or JSON encoder will store.
    if not value.isascii() and SURROGATE.search(value):
        message = "a string contains a lone surrogate"
        problems.add(ProblemCode.INVALID_ENCODING, message, line, column)
        return False
    return True


# --- scalars: the YAML 1.2 core schema ---------------------------------------------

_CORE = "tag:yaml.org,2002:"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)")


_SCALAR_TAGS = frozenset({"str", "int", "float", "bool", "null"})


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


class _Invalid(Exception):
    """A core tag applied to text it cannot mean."""


def _number(text: str, want_float: bool, max_chars: int) -> SourceInt | SourceFloat | None:
    """The core-schema number ``text`` spells, or None; never converts an oversized one."""
    kind: str | None = None
    if _INT10.fullmatch(text):
        kind = "int10"
    elif _INT16.fullmatch(text):
        kind = "int16"
    elif _INT8.fullmatch(text):
        kind = "int8"
    elif _FLOAT.fullmatch(text):
        kind = "float"
    elif _INF.fullmatch(text) or _NAN.fullmatch(text):
        # float() reads "inf"/"-inf"/"nan" in any case, without YAML's leading dot
        return SourceFloat(float(text.replace(".", "")), text)
    if kind is None:
        return None
    if len(text) > max_chars:
        raise NumberTooLong
    if kind == "float":
        return SourceFloat(float(text), text)
    number = int(text, 10) if kind == "int10" else int(text[2:], 16 if kind == "int16" else 8)
    return SourceFloat(float(number), text) if want_float else SourceInt(number, text)


def _resolve_plain(text: str, max_chars: int) -> Any:
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if text[0] in "+-.0123456789":
        number = _number(text, False, max_chars)
        if number is not None:
            return number
    return text


def _apply_tag(short: str, text: str, max_chars: int) -> Any:
    if short == "str":
        return text
    if short == "null" and text in _NULLS:
        return None
    if short == "bool" and text in _BOOLS:
        return _BOOLS[text]
    if short in ("int", "float"):
        number = _number(text.strip(), short == "float", max_chars)
        if isinstance(number, SourceInt) or (short == "float" and number is not None):
            return number
    raise _Invalid


# --- the tree -------------------------------------------------------------------------


class _Frame:
    """A mapping or sequence being built; size and chars include alias expansions."""

    __slots__ = ("anchor", "chars", "has_key", "is_map", "key", "key_loc", "loc", "size", "value")

    def __init__(self, is_map: bool, value: Any, loc: NodeLocation, anchor: str | None) -> None:
        self.is_map = is_map
        self.value = value
        self.loc = loc
        self.anchor = anchor
        self.size = 1
        self.chars = 0
        self.has_key = False  # mappings: the next child is a value
        self.key: str | None = None  # None while the entry is being skipped
        self.key_loc = loc


@dataclass(slots=True)
class _Anchored:
    value: Any
    loc: NodeLocation
    size: int
    chars: int
    key_text: str | None  # scalars only: what the node means as a mapping key


class _YamlBuilder:
    def __init__(self, limits: SourceLimits, problems: Problems) -> None:
        self.limits = limits
        self.problems = problems
        self.stack: list[_Frame] = []
        self.anchors: dict[str, _Anchored] = {}
        self.nodes = 0
        self.chars = 0
        self.documents = 0
        self.root: _Frame | None = None

    def _count(self, size: int, chars: int, line: int, column: int) -> None:
        self.nodes += size
        self.chars += chars
        if self.nodes > self.limits.max_nodes:
            self.problems.fatal(
                ProblemCode.TOO_MANY_NODES,
                f"the document has more than {self.limits.max_nodes:,} values"
                " (aliases count once per use)",
                line,
                column,
            )
        if self.chars > self.limits.max_expanded_chars:
            self.problems.fatal(
                ProblemCode.EXPANSION_TOO_LARGE,
                f"aliases expand the text to more than {self.limits.max_expanded_chars:,}"
                " characters",
                line,
                column,
            )

    def feed(self, event: yaml.Event) -> None:
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self.problems.fatal(
                    ProblemCode.MULTIPLE_DOCUMENTS,
                    "a process file holds one YAML document; found a second '---'",
                    line,
                    column,
                )
            return
        if not isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
            return  # stream and document boundaries
        if not self.stack and self.root is None and not isinstance(event, yaml.MappingStartEvent):
            if isinstance(event, yaml.ScalarEvent) and event.value == "" and event.tag is None:
                self.problems.fatal(
                    ProblemCode.EMPTY_DOCUMENT, "the document is empty", line, column
                )
            self.problems.fatal(
                ProblemCode.NOT_A_MAPPING, "the top level must be a mapping of keys", line, column
            )
        if isinstance(event, yaml.ScalarEvent):
            self._scalar(event, line, column)
        elif isinstance(event, yaml.CollectionStartEvent):
            self._start(event, line, column)
        elif isinstance(event, yaml.CollectionEndEvent):
            self._end()
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event, line, column)

    def _scalar(self, event: yaml.ScalarEvent, line: int, column: int) -> None:
        text = event.value
        self._count(1, len(text), line, column)
        value: Any = None
        if _check_string(text, self.limits, self.problems, line, column):
            value = self._resolve(event, line, column)
        loc = NodeLocation(line, column, None)
        is_merge = text == "<<" and event.tag is None and event.style in (None, "")
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchored(value, loc, 1, len(text), text)
        self._attach(value, loc, 1, len(text), text, is_merge)

    def _resolve(self, event: yaml.ScalarEvent, line: int, column: int) -> Any:
        text, tag = event.value, event.tag
        if tag == "!" or (tag is None and event.style not in (None, "")):
            return text  # quoted, block and `!`-tagged scalars are always strings
        short = tag[len(_CORE) :] if tag is not None and tag.startswith(_CORE) else None
        if tag is not None and short not in _SCALAR_TAGS:
            self._bad_tag(tag, "a scalar", line, column)
            return None
        max_chars = self.limits.max_number_chars
        try:
            return (
                _resolve_plain(text, max_chars)
                if short is None
                else _apply_tag(short, text, max_chars)
            )
        except _Invalid:
            message = f"{text[:40]!r} is not a valid {_show_tag(tag or '')}"
            self.problems.add(ProblemCode.INVALID_VALUE, message, line, column)
        except NumberTooLong:
            message = f"a number is longer than {max_chars} characters; quote it"
            self.problems.add(ProblemCode.VALUE_TOO_LARGE, message, line, column)
        return None

    def _bad_tag(self, tag: str, kind: str, line: int, column: int) -> None:
        shown = _show_tag(tag)
        if tag.startswith(_CORE) and tag[len(_CORE) :] in _SCALAR_TAGS | {"map", "seq"}:
            message = f"tag {shown} cannot be applied to {kind}"
        else:
            message = (
                f"tag {shown} is not supported; only !!str, !!int, !!float, !!bool, !!null,"
                " !!map and !!seq are allowed"
            )
        self.problems.add(ProblemCode.UNSUPPORTED_TAG, message, line, column)

    def _start(self, event: yaml.CollectionStartEvent, line: int, column: int) -> None:
        if len(self.stack) >= self.limits.max_depth:
            self.problems.fatal(
                ProblemCode.TOO_DEEP,
                f"nesting is deeper than {self.limits.max_depth} levels",
                line,
                column,
            )
        self._count(1, 0, line, column)
        is_map = isinstance(event, yaml.MappingStartEvent)
        if event.tag not in (None, "!", _CORE + ("map" if is_map else "seq")):
            self._bad_tag(event.tag, "a mapping" if is_map else "a sequence", line, column)
        value: dict[str, Any] | list[Any] = {} if is_map else []
        self.stack.append(_Frame(is_map, value, NodeLocation(line, column, {}), event.anchor))

    def _end(self) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            self.anchors[frame.anchor] = _Anchored(
                frame.value, frame.loc, frame.size, frame.chars, None
            )
        if not self.stack:
            self.root = frame
            return
        self._attach(frame.value, frame.loc, frame.size, frame.chars, None, False)

    def _alias(self, event: yaml.AliasEvent, line: int, column: int) -> None:
        target = self.anchors.get(event.anchor or "")
        if target is None:
            self.problems.add(
                ProblemCode.UNDEFINED_ALIAS,
                f"alias *{event.anchor} has no earlier anchor &{event.anchor}",
                line,
                column,
            )
            target = _Anchored(None, NodeLocation(line, column, None), 1, 0, None)
        self._count(target.size, target.chars, line, column)
        loc = NodeLocation(line, column, target.loc.children)  # errors inside point at the anchor
        self._attach(target.value, loc, target.size, target.chars, target.key_text, False)

    def _attach(
        self,
        value: Any,
        loc: NodeLocation,
        size: int,
        chars: int,
        key_text: str | None,
        is_merge: bool,
    ) -> None:
        parent = self.stack[-1]
        parent.size += size
        parent.chars += chars
        children = parent.loc.children
        assert children is not None
        if not parent.is_map:
            children[len(parent.value)] = loc
            parent.value.append(value)
        elif not parent.has_key:
            parent.has_key, parent.key, parent.key_loc = True, None, loc
            first = children.get(key_text) if key_text is not None else None
            if key_text is None:
                self.problems.add(
                    ProblemCode.INVALID_KEY,
                    "a mapping key must be a plain value, not a mapping or a list",
                    loc.line,
                    loc.column,
                )
            elif is_merge:
                self.problems.add(
                    ProblemCode.UNSUPPORTED_MERGE_KEY,
                    "merge keys (<<) are not supported; write the keys out",
                    loc.line,
                    loc.column,
                )
            elif first is not None:
                self.problems.add(
                    ProblemCode.DUPLICATE_KEY,
                    f"duplicate key {key_text!r} (first defined on line {first.line})",
                    loc.line,
                    loc.column,
                )
            else:
                parent.key = key_text
        else:
            parent.has_key = False
            if parent.key is not None:
                parent.value[parent.key] = value
                children[parent.key] = NodeLocation(
                    parent.key_loc.line, parent.key_loc.column, loc.children
                )


# --- reading ----------------------------------------------------------------------------


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> tuple[str, int | None, int | None]:
    """PyYAML's and libyaml's wording, rewritten for someone editing a process file."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    context = exc.context or ""
    if mark is None:
        return f"invalid YAML: {problem}", None, None
    ctx = exc.context_mark
    since = f" starting at line {ctx.line + 1}, column {ctx.column + 1}" if ctx else ""
    lines = text.splitlines()
    source_line = lines[mark.line] if mark.line < len(lines) else ""
    indent = source_line[: len(source_line) - len(source_line.lstrip(" \t"))]
    at = source_line[mark.column : mark.column + 1]
    first_on_line = mark.column <= len(indent)
    if "\t" in indent and first_on_line:
        message = "tab characters are not allowed for indentation; use spaces"
    elif "tab" in problem or at == "\t":
        message = "a tab character is not allowed here; use spaces"
    elif "end of stream" in problem and "quoted" in context:
        message = f"unclosed quote: the string{since} never ends"
    elif "mapping values are not allowed" in problem:
        message = "unexpected ':' - quote a value that contains ': ', or check the indentation"
    elif "expected ':'" in problem:
        message = "expected ':' after a key (a plain key must fit on one line)"
    elif "cannot start any token" in problem:
        message = f"{at!r} cannot start a value here; quote the value"
    elif "flow" in context:
        kind, closer = ("list", "]") if "sequence" in context else ("mapping", "}")
        message = f"missing ',' or '{closer}' in the {kind}{since}"
    elif at and at in "]}":
        message = f"unexpected {at!r} without a matching opening bracket"
    elif "block" in context and first_on_line:
        message = f"bad indentation: this line does not line up with the block{since}"
    elif "block" in context:
        message = f"unexpected {at!r} after a complete value; quote the whole value"
    else:
        message = f"{problem} ({context})" if context else problem
    return message, mark.line + 1, mark.column + 1


def load_yaml(
    text: str, limits: SourceLimits, problems: Problems, loader: YamlLoader
) -> tuple[Any, NodeLocation | None]:
    """The plain data and location tree of one YAML document; problems go to ``problems``."""
    builder = _YamlBuilder(limits, problems)
    events: Iterator[yaml.Event] = yaml.parse(text, Loader=loader)
    try:
        for event in events:
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        message, line, column = _syntax_problem(exc, text)
        if "nesting depth" in (exc.problem or ""):  # libyaml's own limit (1000) came first
            message = f"nesting is deeper than {limits.max_depth} levels"
            problems.fatal(ProblemCode.TOO_DEEP, message, line, column)
        problems.fatal(ProblemCode.SYNTAX_ERROR, message, line, column)
    except yaml.YAMLError as exc:  # ReaderError; _decode already refuses what it reports
        problems.fatal(ProblemCode.SYNTAX_ERROR, f"invalid YAML: {exc}")
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # disposes the parser at once instead of at garbage collection
    if builder.root is None:
        problems.fatal(ProblemCode.EMPTY_DOCUMENT, "the document is empty", 1, 1)
    return builder.root.value, builder.root.loc
