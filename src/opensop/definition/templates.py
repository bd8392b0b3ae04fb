"""Templates: strings with ``${reference}`` interpolations.

* A string that is exactly one ``${ref}`` (nothing around it, not even a space) renders
  to the referenced value with its type: a number stays a number, a list a list.
* Otherwise every ``${ref}`` is rendered as text and joined with the text around it:
  strings as they are; numbers, booleans and null in JSON spelling (``1.5``, ``true``,
  ``null``); lists and objects as compact JSON (``[1,"a"]``, ``{"a":1}``).
* ``\\${`` writes a literal ``${``. A backslash was chosen over ``$${`` because money is
  written ``$${steps.quote.outputs.amount}`` ("$12.50") in real notifications.
  A backslash before anything else is kept as it is.
* Whitespace inside the braces is allowed: ``${ inputs.name }``.
* A reference that does not resolve raises ``UnresolvedReference`` from ``render``.

Templates have no overall length limit (bodies and prompts are long); each reference
inside follows the reference rules and limits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opensop.definition.references import (
    MAX_EXPRESSION_LENGTH,
    MISSING,
    ExpressionError,
    Reference,
    describe_char,
    location,
    require,
    scan_reference,
)

_OPEN = "${"
_ESCAPED_OPEN = "\\${"

Part = str | Reference


def as_text(value: Any) -> str:
    """A value as it appears inside a larger string (see the module docstring)."""
    if isinstance(value, str):
        return value
    if value is None or value is MISSING:
        return "null"
    # default=str: a value that is not JSON (a datetime, say) still renders, readably.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: text pieces and references, in order."""

    text: str
    parts: tuple[Part, ...]

    @property
    def is_constant(self) -> bool:
        """True when there is no reference: rendering answers the text, unescaped."""
        return not any(isinstance(part, Reference) for part in self.parts)

    @property
    def is_single_reference(self) -> bool:
        """True when the whole string is one ``${ref}``, so the value keeps its type."""
        return len(self.parts) == 1 and isinstance(self.parts[0], Reference)

    def references(self) -> tuple[Reference, ...]:
        """Every reference, in reading order, each once."""
        found = {part: None for part in self.parts if isinstance(part, Reference)}
        return tuple(found)

    def render(
        self, context: Mapping[str, Any], *, bare_root: tuple[str, ...] | None = None
    ) -> Any:
        """The rendered value; raises ``UnresolvedReference`` for a missing value.

        ``bare_root`` is prepended to bare references, as in ``resolve``.
        """
        if self.is_single_reference:
            single = self.parts[0]
            assert isinstance(single, Reference)  # checked by is_single_reference
            return require(single, context, bare_root=bare_root)
        rendered: list[str] = []
        for part in self.parts:
            if isinstance(part, Reference):
                part = as_text(require(part, context, bare_root=bare_root))
            rendered.append(part)
        return "".join(rendered)

    def map_references(self, change: Callable[[Reference], Reference]) -> Template:
        """A template with each reference replaced by ``change(reference)``.

        For rules that depend on the reference itself, e.g. in webhook URLs a bare
        UPPER_CASE name means an environment variable::

            template.map_references(
                lambda ref: ref.with_root(("env",)) if ref.is_bare and ref.root.isupper() else ref
            )
        """
        parts = tuple(change(part) if isinstance(part, Reference) else part for part in self.parts)
        spelled = "".join(
            f"${{{part.text}}}"
            if isinstance(part, Reference)
            else part.replace(_OPEN, _ESCAPED_OPEN)
            for part in parts
        )
        return Template(spelled, parts)


def parse_template(text: str) -> Template:
    """Parse ``text``; raises ``ExpressionError`` for a broken ``${...}``.

    >>> parse_template("Hello, ${inputs.who}!").render({"process": {"inputs": {"who": "Ada"}}})
    'Hello, Ada!'
    """
    parts: list[Part] = []
    pending: list[str] = []
    position = 0
    while True:
        found = text.find(_OPEN, position)
        if found == -1:
            pending.append(text[position:])
            break
        if found > position and text[found - 1] == "\\":
            pending.append(text[position : found - 1] + _OPEN)
            position = found + len(_OPEN)
            continue
        pending.append(text[position:found])
        if joined := "".join(pending):
            parts.append(joined)
        pending = []
        reference, position = _read_interpolation(text, found)
        parts.append(reference)
    if joined := "".join(pending):
        parts.append(joined)
    return Template(text, tuple(parts))


def _read_interpolation(text: str, start: int) -> tuple[Reference, int]:
    """Read ``${ reference }`` starting at the ``$``; answer (reference, end offset)."""
    if text.find("}", start) == -1:
        raise ExpressionError(
            f"the '${{' {location(text, start)} is never closed; add the closing '}}'", start
        )
    position = _skip_spaces(text, start + len(_OPEN))
    if text[position : position + 1] == "}":
        raise ExpressionError(
            f"the '${{}}' {location(text, start)} is empty; put a reference inside, "
            "like ${inputs.name}",
            position,
        )
    reference, end = scan_reference(text, position)
    if len(reference.text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"the reference {location(text, position)} is longer than "
            f"{MAX_EXPRESSION_LENGTH:,} characters",
            position,
        )
    end = _skip_spaces(text, end)
    if text[end : end + 1] != "}":
        raise ExpressionError(
            f"expected '}}' to close the '${{' {location(text, start)}, "
            f"found {describe_char(text, end)} {location(text, end)}; "
            "only a reference may go inside ${...}",
            end,
        )
    return reference, end + 1


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t":
        position += 1
    return position
