"""Check submitted values (process inputs, step outputs) against their declared fields.

Every violation is reported, not only the first, so a form or an API client can fix all
of them in one round trip. The result feeds the ``details`` of an ``invalid_inputs``
error::

    violations = validate_values(process.inputs, apply_defaults(process.inputs, body))
    if violations:
        raise InvalidInputs(details=[v.to_json() for v in violations])

Apply defaults first: a required field with a ``default`` is then satisfied.

Decisions worth knowing (the spec leaves them open):

* Order: declared fields in declaration order (nested problems right after their field),
  then unknown keys in the order they were submitted.
* ``integer`` accepts ``3.0``: JSON has one number type and ``3.0`` is the same number as
  ``3``. ``3.5``, booleans, NaN and Infinity are refused as ``type_mismatch``.
* Bounds are ``invalid_format`` with ``expected`` naming the bound ("min_length 3",
  "maximum 10"): the value has the right type but the wrong shape. ``min_length`` and
  ``max_length`` count characters of a string and items of a list (``string[]`` ...);
  ``minimum``/``maximum`` apply to numbers, to each item of ``number[]`` and to a
  currency's ``amount``. An empty string is present; only ``min_length`` refuses it.
* ``enum`` is exact: only a string equal to one of ``values`` (case-sensitive) passes;
  ``1`` never matches ``"1"``. Anything else, whatever its type, is ``not_in_enum``.
  ``values`` on ``string[]`` restricts each item the same way; on other types it is
  ignored.
* ``format`` applies to ``string`` and to each item of ``string[]``. ``datetime``
  accepts a naive time (an HTML ``datetime-local`` sends one) as well as ``Z`` and
  ``+HH:MM`` offsets.
* Object ``schema`` / ``item_schema`` (``{key: type name}``) check only the keys that are
  present and not null; extra keys are allowed. Type names are the ``FieldType`` strings
  (plus ``date-time`` and ``enum[a, b]``); an unknown name checks nothing.
  ``object[]`` and ``collection: true`` items use ``item_schema``, else ``schema``.
* ``required`` carries ``expected`` = the declared type (the allowed values for an enum)
  so a client knows what to send; ``unknown_field`` carries none.
* Messages never echo more than 80 characters of a submitted value or key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from opensop.definition.fields import Field, FieldType, StringFormat
from opensop.definition.formats import (
    describe_format,
    is_currency_code,
    is_date,
    is_datetime,
    matches_format,
)
from opensop.definition.violations import (
    Violation,
    ViolationCode,
    clip,
    json_type,
    list_values,
    show_number,
    show_value,
)

__all__ = ["Violation", "ViolationCode", "apply_defaults", "validate_values"]

RequiredIf = Callable[[str, Mapping[str, Any]], bool]


def validate_values(
    fields: Sequence[Field],
    data: object,
    *,
    allow_unknown: bool = False,
    required_if: RequiredIf | None = None,
) -> list[Violation]:
    """Every violation of ``data`` (parsed JSON) against ``fields``; empty when valid.

    ``required_if`` evaluates a field's ``required_if`` expression against the submitted
    object (bare names are sibling values); without it those expressions are ignored.
    Never raises for any JSON value (an exception from ``required_if`` propagates).
    """
    if not isinstance(data, dict):
        return [
            Violation(
                field="",
                code=ViolationCode.TYPE_MISMATCH,
                expected="object",
                message=f"the submitted values must be a JSON object (got {json_type(data)})",
            )
        ]
    out: list[Violation] = []
    # The condition language must not be able to change what we are validating.
    view: Mapping[str, Any] = MappingProxyType(data)
    for field in fields:
        value = data.get(field.name)
        spec = _spec_from_field(field)
        if value is None:
            if field.required:
                out.append(_required(field.name, spec, present=field.name in data))
            elif (
                required_if is not None
                and field.required_if is not None
                and required_if(field.required_if, view)
            ):
                out.append(_required(field.name, spec, when=field.required_if))
            continue
        _check(spec, value, field.name, out)
    if not allow_unknown:
        declared = {field.name for field in fields}
        for key in data:
            if key not in declared:
                name = key if isinstance(key, str) else str(key)
                out.append(
                    Violation(
                        field=clip(name, 128),
                        code=ViolationCode.UNKNOWN_FIELD,
                        expected=None,
                        message=f"{show_value(name)} is not a declared field",
                    )
                )
    return out


def apply_defaults(fields: Sequence[Field], data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each absent field's ``default`` filled in.

    An explicit ``null`` is the caller's choice and stays. Defaults are copied so a
    caller mutating the result cannot change the (shared, frozen) definition.
    """
    result = dict(data)
    for field in fields:
        if field.name not in result and field.default is not None:
            result[field.name] = _copy_json(field.default)
    return result


# --- what a value must look like ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    """What a value must be: a declared field, a schema type name, or a list's item type."""

    kind: FieldType
    values: tuple[str, ...] | None = None
    format: StringFormat | None = None
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    schema: Mapping[str, str] | None = None  # for a single object
    item_schema: Mapping[str, str] | None = None  # for objects inside a list
    collection: bool = False


def _spec_from_field(field: Field) -> _Spec:
    return _Spec(
        kind=field.type,
        values=field.values,
        format=field.format,
        min_length=field.min_length,
        max_length=field.max_length,
        minimum=field.minimum,
        maximum=field.maximum,
        schema=field.object_schema or field.item_schema,
        item_schema=field.item_schema or field.object_schema,
        collection=field.collection,
    )


_ENUM_NAME = re.compile(r"enum\s*\[(.*)\]", re.IGNORECASE | re.DOTALL)
_TYPE_ALIASES = {"date-time": FieldType.DATETIME}


def _spec_from_name(type_name: str) -> _Spec:
    """The spec for a type written inside a ``schema``; unknown names mean ``any``."""
    name = type_name.strip()
    enum = _ENUM_NAME.fullmatch(name)
    if enum is not None:
        values = tuple(v.strip().strip("'\"") for v in enum.group(1).split(","))
        # `enum[]` declares nothing to compare with: any string then.
        return _Spec(kind=FieldType.ENUM, values=values if any(values) else None)
    lowered = name.lower()
    if lowered in _TYPE_ALIASES:
        return _Spec(kind=_TYPE_ALIASES[lowered])
    try:
        return _Spec(kind=FieldType(lowered))
    except ValueError:
        return _Spec(kind=FieldType.ANY)


def _item_spec(spec: _Spec) -> _Spec:
    if spec.kind is FieldType.STRING_LIST:
        if spec.values is not None:
            return _Spec(kind=FieldType.ENUM, values=spec.values)
        return _Spec(kind=FieldType.STRING, format=spec.format)
    if spec.kind is FieldType.NUMBER_LIST:
        return _Spec(kind=FieldType.NUMBER, minimum=spec.minimum, maximum=spec.maximum)
    if spec.kind is FieldType.OBJECT_LIST:
        return _Spec(kind=FieldType.OBJECT, schema=spec.item_schema)
    return _Spec(kind=FieldType.FILE)


_LIST_KINDS = frozenset(
    {FieldType.STRING_LIST, FieldType.NUMBER_LIST, FieldType.OBJECT_LIST, FieldType.FILE_LIST}
)
_STRING_KINDS = frozenset({FieldType.STRING, FieldType.FILE, FieldType.REFERENCE})

_DESCRIBE = {
    FieldType.STRING: "a string",
    FieldType.NUMBER: "a number",
    FieldType.INTEGER: "a whole number",
    FieldType.BOOLEAN: "true or false",
    FieldType.ENUM: "a string",
    FieldType.DATE: "a date (YYYY-MM-DD)",
    FieldType.DATETIME: "an ISO 8601 date-time",
    FieldType.OBJECT: "an object",
    FieldType.FILE: "a file path or URL (a string)",
    FieldType.REFERENCE: "a reference id (a string)",
    FieldType.CURRENCY: 'an object like {"amount": 12.5, "currency": "USD"}',
    FieldType.STRING_LIST: "a list of strings",
    FieldType.NUMBER_LIST: "a list of numbers",
    FieldType.OBJECT_LIST: "a list of objects",
    FieldType.FILE_LIST: "a list of file paths or URLs",
    FieldType.ANY: "a value",
}


# --- checks ------------------------------------------------------------------------------


def _check(spec: _Spec, value: Any, path: str, out: list[Violation]) -> None:
    """Append the violations of one non-null value to ``out``."""
    kind = spec.kind
    if kind is FieldType.ANY:
        return
    if kind in _STRING_KINDS:
        if not isinstance(value, str):
            out.append(_mismatch(path, spec, value))
        elif kind is FieldType.STRING:
            _check_length(spec, len(value), "characters", path, out)
            if spec.format is not None and not matches_format(spec.format, value):
                out.append(_bad_format(path, spec.format.value, value))
    elif kind in (FieldType.NUMBER, FieldType.INTEGER):
        problem = _number_problem(value, whole=kind is FieldType.INTEGER)
        if problem is not None:
            out.append(_mismatch(path, spec, value, got=problem))
        else:
            _check_range(spec, value, path, out)
    elif kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            out.append(_mismatch(path, spec, value))
    elif kind is FieldType.ENUM:
        _check_enum(spec, value, path, out)
    elif kind in (FieldType.DATE, FieldType.DATETIME):
        if not isinstance(value, str):
            out.append(_mismatch(path, spec, value))
        elif not (is_date(value) if kind is FieldType.DATE else is_datetime(value)):
            out.append(_bad_format(path, kind.value, value))
    elif kind is FieldType.OBJECT:
        _check_object(spec, value, path, out)
    elif kind is FieldType.CURRENCY:
        _check_currency(spec, value, path, out)
    elif kind in _LIST_KINDS:
        if not isinstance(value, list):
            out.append(_mismatch(path, spec, value))
            return
        _check_length(spec, len(value), "items", path, out)
        item = _item_spec(spec)
        for index, element in enumerate(value):
            item_path = f"{path}[{index}]"
            if element is None:
                out.append(_mismatch(item_path, item, element))
            else:
                _check(item, element, item_path, out)


def _check_enum(spec: _Spec, value: Any, path: str, out: list[Violation]) -> None:
    if spec.values is None:
        if not isinstance(value, str):
            out.append(_mismatch(path, spec, value))
        return
    if isinstance(value, str) and value in spec.values:
        return
    out.append(
        Violation(
            field=path,
            code=ViolationCode.NOT_IN_ENUM,
            expected=spec.values,
            message=f"{path} must be one of {list_values(spec.values)} (got {show_value(value)})",
        )
    )


def _check_object(spec: _Spec, value: Any, path: str, out: list[Violation]) -> None:
    if isinstance(value, dict):
        _check_schema(spec.schema, value, path, out)
    elif spec.collection and isinstance(value, list):
        for index, element in enumerate(value):
            item_path = f"{path}[{index}]"
            if isinstance(element, dict):
                _check_schema(spec.item_schema, element, item_path, out)
            else:
                out.append(_mismatch(item_path, _Spec(kind=FieldType.OBJECT), element))
    elif spec.collection:
        out.append(_mismatch(path, spec, value, what="an object or a list of objects"))
    else:
        out.append(_mismatch(path, spec, value))


def _check_schema(
    schema: Mapping[str, str] | None, obj: dict[Any, Any], path: str, out: list[Violation]
) -> None:
    if not schema:
        return
    for key, type_name in schema.items():
        nested = obj.get(key)
        if nested is not None:
            _check(_spec_from_name(type_name), nested, f"{path}.{key}", out)


def _check_currency(spec: _Spec, value: Any, path: str, out: list[Violation]) -> None:
    if not isinstance(value, dict):
        out.append(_mismatch(path, spec, value))
        return
    amount_spec = _Spec(kind=FieldType.NUMBER, minimum=spec.minimum, maximum=spec.maximum)
    amount = value.get("amount")
    if amount is None:
        out.append(_required(f"{path}.amount", amount_spec, present="amount" in value))
    else:
        _check(amount_spec, amount, f"{path}.amount", out)
    code = value.get("currency")
    code_path = f"{path}.currency"
    if code is None:
        out.append(_required(code_path, _Spec(kind=FieldType.STRING), present="currency" in value))
    elif not isinstance(code, str):
        out.append(_mismatch(code_path, _Spec(kind=FieldType.STRING), code))
    elif not is_currency_code(code):
        out.append(
            Violation(
                field=code_path,
                code=ViolationCode.INVALID_FORMAT,
                expected="iso-4217",
                message=(
                    f"{code_path} must be a three-letter uppercase currency code like USD "
                    f"(got {show_value(code)})"
                ),
            )
        )


def _number_problem(value: Any, *, whole: bool) -> str | None:
    """Why ``value`` is not an acceptable number (the "got" text), or None when it is."""
    # bool is an int subclass in Python, but true is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return json_type(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return show_value(value)
        if whole and not value.is_integer():
            return show_value(value)
    return None


def _check_range(spec: _Spec, value: int | float, path: str, out: list[Violation]) -> None:
    if spec.minimum is not None and value < spec.minimum:
        bound = show_number(spec.minimum)
        out.append(
            Violation(
                field=path,
                code=ViolationCode.INVALID_FORMAT,
                expected=f"minimum {bound}",
                message=f"{path} must be at least {bound} (got {show_value(value)})",
            )
        )
    if spec.maximum is not None and value > spec.maximum:
        bound = show_number(spec.maximum)
        out.append(
            Violation(
                field=path,
                code=ViolationCode.INVALID_FORMAT,
                expected=f"maximum {bound}",
                message=f"{path} must be at most {bound} (got {show_value(value)})",
            )
        )


def _check_length(spec: _Spec, length: int, unit: str, path: str, out: list[Violation]) -> None:
    if spec.min_length is not None and length < spec.min_length:
        out.append(
            Violation(
                field=path,
                code=ViolationCode.INVALID_FORMAT,
                expected=f"min_length {spec.min_length}",
                message=f"{path} must have at least {spec.min_length} {unit} (got {length})",
            )
        )
    if spec.max_length is not None and length > spec.max_length:
        out.append(
            Violation(
                field=path,
                code=ViolationCode.INVALID_FORMAT,
                expected=f"max_length {spec.max_length}",
                message=f"{path} must have at most {spec.max_length} {unit} (got {length})",
            )
        )


# --- violations and messages -------------------------------------------------------------


def _required(
    path: str, spec: _Spec, *, present: bool = False, when: str | None = None
) -> Violation:
    if when is not None:
        reason = f"is required when {clip(when, 80)}"
    else:
        reason = "is required and may not be null" if present else "is required"
    expected: Any = spec.values if spec.kind is FieldType.ENUM and spec.values else spec.kind.value
    return Violation(
        field=path, code=ViolationCode.REQUIRED, expected=expected, message=f"{path} {reason}"
    )


def _mismatch(
    path: str, spec: _Spec, value: Any, *, got: str | None = None, what: str | None = None
) -> Violation:
    description = what or _DESCRIBE[spec.kind]
    return Violation(
        field=path,
        code=ViolationCode.TYPE_MISMATCH,
        expected=spec.kind.value,
        message=f"{path} must be {description} (got {got or json_type(value)})",
    )


def _bad_format(path: str, format_name: str, value: str) -> Violation:
    return Violation(
        field=path,
        code=ViolationCode.INVALID_FORMAT,
        expected=format_name,
        message=f"{path} must be {describe_format(format_name)} (got {show_value(value)})",
    )


def _copy_json(value: Any) -> Any:
    """Copy containers, keep scalars: ``deepcopy`` cannot rebuild the loader's SourceInt."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_json(item) for item in value]
    return value
