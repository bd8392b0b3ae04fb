"""Declared fields: process inputs, step outputs and process outputs share one shape."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, field_validator
from pydantic import Field as PydanticField

from opensop.definition.frozen import FrozenMap
from opensop.definition.text import Text, TextList


class FieldType(StrEnum):
    """Every value type a field may declare."""

    STRING = "string"  # text; `format` checked when given
    NUMBER = "number"  # int or decimal; booleans, NaN and Infinity are not numbers
    INTEGER = "integer"  # whole number
    BOOLEAN = "boolean"  # true/false only
    ENUM = "enum"  # one of `values`, exact and case-sensitive
    DATE = "date"  # ISO 8601 calendar date
    DATETIME = "datetime"  # ISO 8601 date-time
    OBJECT = "object"  # JSON object; `schema` checked when given
    FILE = "file"  # a path or URL string
    REFERENCE = "reference"  # a string id
    CURRENCY = "currency"  # {amount: number, currency: "USD"}
    STRING_LIST = "string[]"
    NUMBER_LIST = "number[]"
    OBJECT_LIST = "object[]"
    FILE_LIST = "file[]"
    ANY = "any"  # no type declared (allowed on process outputs that only map `from:`)


class StringFormat(StrEnum):
    EMAIL = "email"
    URI = "uri"
    DATE = "date"
    DATE_TIME = "date-time"
    DATETIME = "datetime"  # the spelling some published files use for date-time


class Field(BaseModel):
    """One declared field. Immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = PydanticField(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=128)
    type: FieldType = FieldType.STRING
    required: StrictBool = False
    values: TextList | None = None
    description: Text | None = None
    default: Any = None
    format: StringFormat | None = None
    # `schema` is a reserved name on pydantic models, hence the alias.
    object_schema: FrozenMap[Text] | None = PydanticField(default=None, alias="schema")
    item_schema: FrozenMap[Text] | None = None
    from_: Text | None = PydanticField(default=None, alias="from")
    required_if: Text | None = None
    collection: StrictBool = False
    min_length: StrictInt | None = PydanticField(default=None, ge=0)
    max_length: StrictInt | None = PydanticField(default=None, ge=0)
    minimum: StrictInt | StrictFloat | None = None
    maximum: StrictInt | StrictFloat | None = None
    # Literal or templated value of an automated step's output (no script needed).
    value: Any = None
    label: Text | None = None
    placeholder: Text | None = None

    @field_validator("default", "value")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        # .inf / .nan would be stored as null and then refuse every start.
        stack = [value]
        while stack:
            current = stack.pop()
            if isinstance(current, float) and not math.isfinite(current):
                raise ValueError("numbers must be finite (no .inf or .nan)")
            if isinstance(current, dict):
                stack.extend(current.values())
            elif isinstance(current, list | tuple):
                stack.extend(current)
        return value
