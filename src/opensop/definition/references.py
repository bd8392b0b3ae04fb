"""References: the paths that read a value out of an instance's context.

A reference is an identifier head followed by segments::

    process.inputs.company_name            .field
    steps.review-application.outputs.decision
    trigger.payload.items[0]               [0]   a non-negative index
    steps.source.outputs.messages[*]       [*]   every item
    steps.source.outputs.messages[*].id    [*].field   pluck a field from every item
    payload['odd key!']                    ['...'] or ["..."]   a key with odd characters

Names may contain letters, digits, ``_`` and ``-`` (step ids are hyphenated). The head
starts with a letter or ``_``; a name after a dot may also start with a digit, because
step ids may (``steps.2fa-check.outputs.ok``).

``resolve`` walks a plain JSON-like context (dicts, lists and tuples only; never an
attribute of an arbitrary object) and answers ``MISSING`` instead of raising.

Two conventions live here because every caller needs the same answer:

* ``inputs.x`` is an alias of ``process.inputs.x``: resolving it walks
  ``context["process"]["inputs"]``, never a top-level ``"inputs"`` key.
* A *bare* reference is one whose root is not one of ``KNOWN_ROOTS`` (``score`` in
  ``exit_when: score < 0.4``). What it means depends on where it is written, so the
  caller says: ``resolve(ref, ctx, bare_root=("outputs",))`` reads ``outputs.score``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Literal

MAX_EXPRESSION_LENGTH: Final = 4096
"""Longest expression, reference or ``${...}`` reference text accepted, in characters."""

MAX_REFERENCE_SEGMENTS: Final = 64
"""Most segments in one reference; this also bounds the recursion of ``[*]``."""

KNOWN_ROOTS: Final = frozenset(
    {"process", "inputs", "steps", "trigger", "instance", "env", "loop", "outputs", "payload"}
)
"""Roots with a fixed meaning; a reference starting with anything else is bare."""

_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_DIGITS = re.compile(r"[0-9]+")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_WHITESPACE = " \t\r\n"
_SIMPLE_ESCAPES: Final = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
    "n": "\n",
    "t": "\t",
    "r": "\r",
}


class ExpressionError(Exception):
    """A reference, condition or template that cannot be parsed.

    ``message`` is a sentence for the process author (it names the line and column);
    ``position`` is the 0-based offset in the text where the problem was found.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


class UnresolvedReference(Exception):
    """A reference that had to have a value at run time did not resolve.

    The engine turns this into the step failure ``unresolved_reference``.
    """

    def __init__(self, reference: str) -> None:
        super().__init__(f"'{reference}' does not resolve to a value")
        self.reference = reference


class Missing(Enum):
    """The type of ``MISSING``; an enum so the sentinel survives pickling and copying."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> Literal[False]:
        return False


MISSING: Final = Missing.MISSING
"""What ``resolve`` answers when the path leads nowhere (distinct from a stored null)."""


@dataclass(frozen=True, slots=True)
class Key:
    """``.name`` or ``['name']``: a key of an object."""

    name: str


@dataclass(frozen=True, slots=True)
class Index:
    """``[n]``: the n-th item of a list, counting from 0."""

    n: int


@dataclass(frozen=True, slots=True)
class Star:
    """``[*]``: every item of a list; the rest of the path is applied to each."""


Segment = Key | Index | Star


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed path. Two references are equal when their segments are."""

    segments: tuple[Segment, ...]
    text: str = field(compare=False)

    def __post_init__(self) -> None:
        if not self.segments or not isinstance(self.segments[0], Key):
            raise ValueError("a reference starts with a name")

    def __str__(self) -> str:
        return self.text

    @classmethod
    def of(cls, *segments: Segment) -> Reference:
        """Build a reference from segments, spelling its text canonically.

        The text parses back to the same segments when the first key is a plain name.
        """
        return cls(segments, format_segments(segments))

    @property
    def root(self) -> str:
        """The first name: ``steps`` in ``steps.a.outputs.b``."""
        head = self.segments[0]
        assert isinstance(head, Key)  # guaranteed by __post_init__
        return head.name

    @property
    def is_bare(self) -> bool:
        """True when the root is not a known root, so its meaning depends on the caller."""
        return self.root not in KNOWN_ROOTS

    def step_output(self) -> tuple[str, str] | None:
        """``(step_id, output_name)`` for ``steps.<id>.outputs.<name>...``; else None."""
        match self.segments[:4]:
            case (Key("steps"), Key(step_id), Key("outputs"), Key(output)):
                return step_id, output
        return None

    def with_root(self, prefix: tuple[str, ...]) -> Reference:
        """This path under ``prefix``: ``score`` with ``("outputs",)`` is ``outputs.score``."""
        return Reference.of(*(Key(name) for name in prefix), *self.segments)

    def canonical(self) -> Reference:
        """The same path with the ``inputs.`` alias spelled ``process.inputs.``."""
        if self.root != "inputs":
            return self
        return Reference.of(Key("process"), *self.segments)


def format_segments(segments: tuple[Segment, ...]) -> str:
    """Spell segments as reference text, quoting keys that are not plain names."""
    parts: list[str] = []
    for position, segment in enumerate(segments):
        match segment:
            case Key(name) if (_HEAD if position == 0 else _NAME).fullmatch(name):
                parts.append(name if position == 0 else f".{name}")
            case Key(name):
                escaped = name.replace("\\", "\\\\").replace("'", "\\'")
                parts.append(f"['{escaped}']")
            case Index(n):
                parts.append(f"[{n}]")
            case Star():
                parts.append("[*]")
    return "".join(parts)


def location(text: str, position: int) -> str:
    """``at column 7``, or ``at line 2, column 3`` for text spanning lines (1-based)."""
    line_start = text.rfind("\n", 0, position) + 1
    column = position - line_start + 1
    if "\n" not in text:
        return f"at column {column}"
    line = text.count("\n", 0, position) + 1
    return f"at line {line}, column {column}"


def describe_char(text: str, position: int) -> str:
    """The character at ``position`` for an error message, or 'the end of the text'."""
    if position >= len(text):
        return "the end of the text"
    return repr(text[position])


def read_string_literal(text: str, start: int) -> tuple[str, int]:
    """Read a quoted string starting at ``text[start]``; answer (value, end offset).

    Escapes: ``\\\\ \\' \\" \\/ \\n \\t \\r`` and ``\\uXXXX``.
    """
    quote = text[start]
    chunks: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == quote:
            return "".join(chunks), position + 1
        if char != "\\":
            chunks.append(char)
            position += 1
            continue
        escape = text[position + 1 : position + 2]
        if escape in _SIMPLE_ESCAPES:
            chunks.append(_SIMPLE_ESCAPES[escape])
            position += 2
        elif escape == "u" and _HEX4.fullmatch(text, position + 2, position + 6):
            chunks.append(chr(int(text[position + 2 : position + 6], 16)))
            position += 6
        elif escape == "":
            break
        else:
            raise ExpressionError(
                f"unknown escape '\\{escape}' in a string {location(text, position)}; "
                "use \\\\ for a backslash",
                position,
            )
    raise ExpressionError(
        f"the string starting {location(text, start)} is never closed; add the closing {quote}",
        start,
    )


def scan_reference(text: str, start: int) -> tuple[Reference, int]:
    """Read the reference starting at ``text[start]``; answer (reference, end offset).

    Stops at the first character that cannot continue the path, so callers (the
    condition tokenizer, the template parser) decide what may follow it.
    """
    head = _HEAD.match(text, start)
    if head is None:
        raise ExpressionError(
            f"expected a reference {location(text, start)}, found {describe_char(text, start)}; "
            "a reference starts with a letter or '_'",
            start,
        )
    segments: list[Segment] = [Key(head.group())]
    position = head.end()
    while position < len(text) and text[position] in ".[":
        if len(segments) >= MAX_REFERENCE_SEGMENTS:
            raise ExpressionError(
                f"the reference has more than {MAX_REFERENCE_SEGMENTS} parts "
                f"{location(text, position)}",
                position,
            )
        if text[position] == ".":
            name = _NAME.match(text, position + 1)
            if name is None:
                raise ExpressionError(
                    f"expected a field name after '.' {location(text, position + 1)}, "
                    f"found {describe_char(text, position + 1)}",
                    position + 1,
                )
            segments.append(Key(name.group()))
            position = name.end()
        else:
            segment, position = _read_bracket(text, position)
            segments.append(segment)
    return Reference(tuple(segments), text[start:position]), position


def _read_bracket(text: str, start: int) -> tuple[Segment, int]:
    """Read ``[0]``, ``[*]`` or ``['key']`` starting at the ``[``."""
    position = _skip_whitespace(text, start + 1)
    char = text[position : position + 1]
    segment: Segment
    if char == "*":
        segment, position = Star(), position + 1
    elif char in ("'", '"'):
        name, position = read_string_literal(text, position)
        segment = Key(name)
    elif digits := _DIGITS.match(text, position):
        segment, position = Index(int(digits.group())), digits.end()
    else:
        hint = "; indexes count from 0" if char == "-" else ""
        raise ExpressionError(
            f"expected a number, '*' or a quoted key inside '[...]' {location(text, position)}, "
            f"found {describe_char(text, position)}{hint}",
            position,
        )
    position = _skip_whitespace(text, position)
    if text[position : position + 1] != "]":
        raise ExpressionError(
            f"expected ']' to close the '[' {location(text, start)}, "
            f"found {describe_char(text, position)}",
            position,
        )
    return segment, position + 1


def _skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position] in _WHITESPACE:
        position += 1
    return position


def parse_reference(text: str) -> Reference:
    """Parse a whole string as one reference (surrounding whitespace is allowed).

    >>> parse_reference("steps.review.outputs.decision").step_output()
    ('review', 'decision')
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"the reference is {len(text):,} characters long; "
            f"the limit is {MAX_EXPRESSION_LENGTH:,}",
            MAX_EXPRESSION_LENGTH,
        )
    start = _skip_whitespace(text, 0)
    if start == len(text):
        raise ExpressionError("the reference is empty", start)
    reference, end = scan_reference(text, start)
    trailing = _skip_whitespace(text, end)
    if trailing != len(text):
        raise ExpressionError(
            f"unexpected {describe_char(text, trailing)} {location(text, trailing)} "
            f"after the reference '{reference.text}'",
            trailing,
        )
    return reference


def resolve(
    reference: Reference,
    context: Mapping[str, Any],
    *,
    bare_root: tuple[str, ...] | None = None,
) -> Any:
    """The value at ``reference`` in ``context``, or ``MISSING``. Never raises.

    ``bare_root`` is prepended to bare references (see the module docstring).
    ``[*]`` on a list applies the rest of the path to each item and answers the list
    of results; items where the rest leads nowhere are dropped, so
    ``items[*].name`` lists the names that exist. Each ``[*]`` adds one level of list
    (nothing is flattened). ``[*]`` on anything but a list is ``MISSING``.
    """
    segments = reference.segments
    if bare_root is not None and reference.is_bare:
        segments = tuple(Key(name) for name in bare_root) + segments
    if segments[0] == Key("inputs"):
        segments = (Key("process"), *segments)
    if isinstance(context, dict):
        return _walk(context, segments)
    # A read-only Mapping is accepted at the top only; below it, only plain containers.
    head = segments[0]
    if not isinstance(context, Mapping) or not isinstance(head, Key):
        return MISSING
    return _walk(context.get(head.name, MISSING), segments[1:])


def _walk(node: Any, segments: tuple[Segment, ...]) -> Any:
    for position, segment in enumerate(segments):
        match segment:
            case Key(name):
                node = dict.get(node, name, MISSING) if isinstance(node, dict) else MISSING
            case Index(n):
                node = node[n] if isinstance(node, list | tuple) and n < len(node) else MISSING
            case Star():
                if not isinstance(node, list | tuple):
                    return MISSING
                rest = segments[position + 1 :]
                picked = (_walk(item, rest) for item in node)
                return [value for value in picked if value is not MISSING]
        if node is MISSING:
            return MISSING
    return node


def require(
    reference: Reference,
    context: Mapping[str, Any],
    *,
    bare_root: tuple[str, ...] | None = None,
) -> Any:
    """Like ``resolve``, but a path that leads nowhere raises ``UnresolvedReference``."""
    value = resolve(reference, context, bare_root=bare_root)
    if value is MISSING:
        raise UnresolvedReference(reference.text)
    return value
