"""Violations: what is wrong with one submitted value, and how values are shown in messages.

``Violation`` is one detail of an ``invalid_inputs`` error, keyed by a stable
``ViolationCode``. The helpers below render submitted values for its message, each
bounded (``show_value`` never echoes more than 80 characters) so a hostile value cannot
bloat an error. ``values`` builds the violations; import them from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "Violation",
    "ViolationCode",
    "clip",
    "json_type",
    "list_values",
    "show_number",
    "show_value",
]


class ViolationCode(StrEnum):
    """The stable codes of ``invalid_inputs`` details (see spec/api.md)."""

    REQUIRED = "required"  # missing or null where a value is required
    TYPE_MISMATCH = "type_mismatch"  # wrong JSON type (including NaN/Infinity, 3.5 for integer)
    NOT_IN_ENUM = "not_in_enum"  # not one of the declared values
    INVALID_FORMAT = "invalid_format"  # right type, wrong shape (format, date, bounds)
    UNKNOWN_FIELD = "unknown_field"  # a key no field declares


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem with one value. ``field`` is a path: ``record.revenue``, ``tags[2]``."""

    field: str
    code: ViolationCode
    expected: Any | None
    message: str

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"field": self.field, "code": self.code.value}
        if self.expected is not None:
            # Stored as a tuple so the violation stays hashable; JSON wants a list.
            expected = self.expected
            body["expected"] = list(expected) if isinstance(expected, tuple) else expected
        body["message"] = self.message
        return body


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type ("object", "array" ...), for "(got ...)"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def show_value(value: Any) -> str:
    """A short rendering of a submitted value: at most 80 characters, whatever it was."""
    if isinstance(value, str):
        # Cut before repr so a huge string is never copied whole into a message.
        return clip(repr(value[:90]), 80)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return show_number(value)
    return json_type(value)


def show_number(value: int | float) -> str:
    """A number as JSON would spell it (NaN and Infinity by name), clipped."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    try:
        return clip(str(value), 80)
    except ValueError:  # over Python's int-to-text digit limit
        return "a number too long to show"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def list_values(values: tuple[str, ...]) -> str:
    """The first ten allowed values, for a ``not_in_enum`` message."""
    if not values:
        return "(no values declared)"
    shown = ", ".join(clip(v, 40) for v in values[:10])
    more = len(values) - 10
    return f"{shown} and {more} more" if more > 0 else shown
