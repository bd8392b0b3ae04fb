"""Keep the author's text where YAML would have guessed another type.

The YAML loader hands plain scalars back as ``SourceScalar`` subclasses that remember
their source text, so ``version: 1.10`` can become the string "1.10", never 1.1.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator


class SourceText:
    """Mixin for scalars that remember the exact text they were written as."""

    source: str


class SourceInt(int, SourceText):
    def __new__(cls, value: int, source: str) -> SourceInt:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj

    def __reduce__(self) -> tuple[type[SourceInt], tuple[int, str]]:
        return (SourceInt, (int(self), self.source))


class SourceFloat(float, SourceText):
    def __new__(cls, value: float, source: str) -> SourceFloat:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj

    def __reduce__(self) -> tuple[type[SourceFloat], tuple[float, str]]:
        return (SourceFloat, (float(self), self.source))


def scalar_text(value: Any) -> Any:
    """The author's text for a number written where text was expected; else the value."""
    if isinstance(value, SourceText):
        return value.source
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


def coerce_scalar_to_text(value: Any) -> Any:
    return scalar_text(value)


def coerce_scalars_to_text(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [scalar_text(v) for v in value]
    return value


# Text written where a string is expected keeps the author's spelling (1.10 stays "1.10").
# The JSON Schema admits numbers there too, as the loader does.
Text = Annotated[str, BeforeValidator(scalar_text, json_schema_input_type=str | int | float)]
TextList = Annotated[
    tuple[str, ...],
    BeforeValidator(coerce_scalars_to_text, json_schema_input_type=list[str | int | float]),
]
