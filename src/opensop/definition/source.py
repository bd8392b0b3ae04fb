"""Turn untrusted process-file bytes into plain data, with line/column for every path.

``load_source`` is the only door between a file someone uploaded and the rest of the
definition layer. It returns dicts, lists, str, int, float, bool and None (numbers written
unquoted come back as ``SourceInt``/``SourceFloat`` so their text survives), plus a
locator for error messages, and it refuses hostile input within fixed bounds
(``SourceLimits``) instead of hanging or exhausting memory.

    doc = load_source(raw, filename="onboarding.sop.yaml")
    doc.value["process"]["version"]             # SourceFloat(1.1, "1.10") for `version: 1.10`
    doc.locate(("process", "steps", 2, "type"))  # (41, 7): line and column of the key

YAML decisions, for the record:
- Scalars resolve by the YAML 1.2 core schema: only true/false spellings are booleans,
  ``yes``/``on``/``2024-01-01`` stay strings, ``0777`` is decimal 777 (text kept).
- Only the standard str/int/float/bool/null/map/seq tags are accepted; no object is ever
  constructed from a tag.
- Merge keys (``<<``) are refused (``unsupported_merge_key``): they are YAML 1.1, not
  core schema, and reading ``<<`` as an ordinary key would silently build a different
  process. Anchors and aliases work.
- An alias shares the anchored subtree (no copy) - the definition layer treats the data
  as immutable - but it counts the subtree's full size against the node limit, so alias
  bombs are refused before they cost anything.

The tree is built from parser events with an explicit stack, so depth, node count and
alias expansion are checked while reading and no input can cause a RecursionError.
JSON goes through the json module after one linear token scan that bounds depth and size
first and records positions, so JSON files get the same limits and a full locator.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

import yaml

from opensop.definition.text import SourceFloat, SourceInt

__all__ = [
    "DEFAULT_LIMITS",
    "YAML_LOADER",
    "ProblemCode",
    "SourceDocument",
    "SourceError",
    "SourceLimits",
    "SourceProblem",
    "load_source",
]

Path = tuple[str | int, ...]

# libyaml is several times faster; the pure-Python parser gives the same events without it.
YAML_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

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


class _Loc:
    """Where a node starts, and where its children start (None for scalars)."""

    __slots__ = ("children", "column", "line")

    def __init__(self, line: int, column: int, children: dict[str | int, _Loc] | None) -> None:
        self.line = line
        self.column = column
        self.children = children


@dataclass(frozen=True)
class SourceDocument:
    """The plain data of one file, and where each part of it was written."""

    value: dict[str, Any]
    filename: str = "<string>"
    format: str = "yaml"  # "yaml" | "json"
    _root: _Loc | None = field(default=None, repr=False, compare=False)

    def locate(self, path: Path) -> tuple[int, int] | None:
        """(line, column) of the node at ``path``; the nearest known ancestor otherwise.

        A mapping entry points at its key, a list item at the item itself.
        """
        loc = self._root
        if loc is None:
            return None
        for part in path:
            child = loc.children.get(part) if loc.children else None
            if child is None:
                break
            loc = child
        return (loc.line, loc.column)


class _Abort(Exception):
    """Stop reading: a fatal problem was recorded."""


class _Problems:
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
        raise _Abort


# --- bytes to text -----------------------------------------------------------------------

_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Outside YAML's printable set; both parsers would refuse these with a vaguer message.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _too_large(size: int, limits: SourceLimits, problems: _Problems) -> None:
    if size > limits.max_bytes:
        problems.fatal(
            ProblemCode.FILE_TOO_LARGE,
            f"the file is larger than the limit of {limits.max_bytes:,} bytes",
        )


def _decode(data: bytes | str, limits: SourceLimits, problems: _Problems) -> str:
    if isinstance(data, str):
        # A character is at least one UTF-8 byte, so this refuses 50 MB without encoding it.
        _too_large(len(data), limits, problems)
        _too_large(len(data.encode("utf-8", "surrogatepass")), limits, problems)
        text = data
    else:
        _too_large(len(data), limits, problems)
        encoding = "utf-8"
        for bom, name in _BOMS:
            if data.startswith(bom):
                data, encoding = data[len(bom) :], name
                break
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            line = column = None
            if encoding == "utf-8":
                line_start = data.rfind(b"\n", 0, exc.start) + 1
                line = data.count(b"\n", 0, exc.start) + 1
                column = len(data[line_start : exc.start].decode("utf-8")) + 1
            problems.fatal(
                ProblemCode.INVALID_ENCODING,
                f"the file is not valid {encoding.upper()} text ({exc.reason})",
                line,
                column,
            )
    return text.removeprefix("\ufeff")


def _check_characters(text: str, forbidden: re.Pattern[str], problems: _Problems) -> None:
    bad = forbidden.search(text)
    if bad is None:
        return
    char = bad.group()
    line, column = _line_col(text, bad.start())
    if _SURROGATE.match(char):  # only a str argument can hold one
        message = "the text contains a lone surrogate"
        problems.fatal(ProblemCode.INVALID_ENCODING, message, line, column)
    hint = " (is the file UTF-16 without a byte order mark?)" if char == "\x00" else ""
    message = f"control character U+{ord(char):04X} is not allowed{hint}"
    problems.fatal(ProblemCode.SYNTAX_ERROR, message, line, column)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _utf8_size(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def _too_large_message(limits: SourceLimits) -> str:
    return f"a value is larger than {limits.max_scalar_bytes // KIB:,} KiB"


def _check_string(
    value: str, limits: SourceLimits, problems: _Problems, line: int | None, column: int | None
) -> bool:
    """False (and a problem recorded) when a string is too large or not encodable."""
    if _utf8_size(value) > limits.max_scalar_bytes:
        problems.add(ProblemCode.VALUE_TOO_LARGE, _too_large_message(limits), line, column)
        return False
    # Escapes like "\ud800" make strings that no database or JSON encoder will store.
    if not value.isascii() and _SURROGATE.search(value):
        message = "a string contains a lone surrogate"
        problems.add(ProblemCode.INVALID_ENCODING, message, line, column)
        return False
    return True


# --- YAML ----------------------------------------------------------------------------------

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


class _TooLong(Exception):
    """A number literal over max_number_chars."""


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
        raise _TooLong
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


class _Frame:
    """A mapping or sequence being built; size and chars include alias expansions."""

    __slots__ = ("anchor", "chars", "has_key", "is_map", "key", "key_loc", "loc", "size", "value")

    def __init__(self, is_map: bool, value: Any, loc: _Loc, anchor: str | None) -> None:
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
    loc: _Loc
    size: int
    chars: int
    key_text: str | None  # scalars only: what the node means as a mapping key


class _YamlBuilder:
    def __init__(self, limits: SourceLimits, problems: _Problems) -> None:
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
        loc = _Loc(line, column, None)
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
        except _TooLong:
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
        self.stack.append(_Frame(is_map, value, _Loc(line, column, {}), event.anchor))

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
            target = _Anchored(None, _Loc(line, column, None), 1, 0, None)
        self._count(target.size, target.chars, line, column)
        loc = _Loc(line, column, target.loc.children)  # errors inside point at the anchor
        self._attach(target.value, loc, target.size, target.chars, target.key_text, False)

    def _attach(
        self, value: Any, loc: _Loc, size: int, chars: int, key_text: str | None, is_merge: bool
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
                children[parent.key] = _Loc(
                    parent.key_loc.line, parent.key_loc.column, loc.children
                )


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


def _load_yaml(text: str, limits: SourceLimits, problems: _Problems) -> tuple[Any, _Loc | None]:
    builder = _YamlBuilder(limits, problems)
    events: Iterator[yaml.Event] = yaml.parse(text, Loader=YAML_LOADER)
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


# --- JSON ----------------------------------------------------------------------------------

# Possessive quantifiers: an unterminated string fails in one pass instead of backtracking.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}:,]|[^\s\[\]{}:,"]+|"', re.DOTALL)
_JSON_SPACE = re.compile(r"\s*")
_JSON_CONSTANTS = frozenset({"NaN", "Infinity", "-Infinity"})


class _JsonFrame:
    __slots__ = ("expect_value", "index", "is_map", "key", "loc")

    def __init__(self, is_map: bool, loc: _Loc) -> None:
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

    def __init__(self, text: str, limits: SourceLimits, problems: _Problems) -> None:
        self.limits = limits
        self.root: _Loc | None = None
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
            loc = _Loc(line, column, {} if first in "[{" else None)
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
        if _utf8_size(token) - 2 <= self.limits.max_scalar_bytes:
            return
        try:  # escapes make the text longer than the value; measure the value
            value = json.loads(token)
        except ValueError:
            return
        if _utf8_size(value) > self.limits.max_scalar_bytes:
            message = _too_large_message(self.limits)
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
        children[key] = _Loc(line, column, None)
        frame.key = key

    def _place(self, parent: _JsonFrame | None, loc: _Loc) -> None:
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


def _load_json(text: str, limits: SourceLimits, problems: _Problems) -> tuple[Any, _Loc | None]:
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
            raise _TooLong
        return int(digits)

    try:
        value = json.loads(
            text, object_pairs_hook=pairs, parse_constant=constant, parse_int=integer
        )
    except json.JSONDecodeError as exc:
        problems.fatal(ProblemCode.SYNTAX_ERROR, exc.msg, exc.lineno, exc.colno)
    except _Refused as exc:
        message = f"{exc} is not a valid JSON number"
        problems.fatal(ProblemCode.SYNTAX_ERROR, message, *(scan.constant_at or (None, None)))
    except _TooLong:
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


def _check_surrogates(value: Any, problems: _Problems) -> None:
    """Iterative walk: a "\\ud800" escape decodes to a string nothing can store."""
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                message = "a string contains a lone surrogate"
                problems.add(ProblemCode.INVALID_ENCODING, message, None, None)
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


# --- the door --------------------------------------------------------------------------------


def _is_json(filename: str, text: str) -> bool:
    if filename.lower().endswith(".json"):
        return True
    if filename != "<string>":
        return False
    # `{"` or `{}` is JSON in practice; `{name: x}` is a YAML flow mapping.
    start = text.lstrip()
    return start.startswith("{") and start[1:].lstrip()[:1] in ('"', "}")


def load_source(
    data: bytes | str, *, filename: str = "<string>", limits: SourceLimits = DEFAULT_LIMITS
) -> SourceDocument:
    """Parse a process file into plain data; raise ``SourceError`` listing every problem.

    ``.json`` files (and ``<string>`` input that opens with ``{"``) are read as JSON,
    everything else as YAML.
    """
    problems = _Problems(limits)
    try:
        text = _decode(data, limits, problems)
        is_json = _is_json(filename, text)
        # JSON strings may hold any character but controls, which json.loads refuses itself.
        _check_characters(text, _SURROGATE if is_json else _NOT_PRINTABLE, problems)
        load = _load_json if is_json else _load_yaml
        value, root = load(text, limits, problems)
    except _Abort:
        raise SourceError(problems.items, filename=filename) from None
    if problems.items:
        raise SourceError(problems.items, filename=filename)
    return SourceDocument(value, filename, "json" if is_json else "yaml", root)
