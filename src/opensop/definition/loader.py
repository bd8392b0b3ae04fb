"""Turn a process file into a validated definition, or into every problem it has.

    bytes ──source.load_source──▶ plain data + locator
          ──unwrap (wrapped | flat form)──▶ process mapping
          ──pydantic models──▶ ProcessDefinition         (shape, types, unknown keys)
          ──checks.check_definition──▶ []                 (references, order, durations)

Each problem carries a path in the file (``process.steps[2].webhook.response_mode``), a
stable code, a sentence for a person, and for YAML files a line and column.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from opensop.definition import models
from opensop.definition.checks import check_definition
from opensop.definition.problems import (
    DefinitionError,
    PathTuple,
    Problem,
    RawProblem,
    format_path,
)
from opensop.definition.source import SourceDocument, SourceError, load_source
from opensop.definition.text import scalar_text

SUPPORTED_FORMAT_VERSIONS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7")


class Profile(StrEnum):
    """Where the definition will run: the server refuses local-only step types."""

    SERVER = "server"
    LOCAL = "local"


def load_definition_file(
    path: str | Path, *, profile: Profile = Profile.SERVER
) -> models.ProcessDefinition:
    file = Path(path)
    return load_definition(file.read_bytes(), filename=file.name, profile=profile)


def load_definition(
    data: bytes | str, *, filename: str = "<string>", profile: Profile = Profile.SERVER
) -> models.ProcessDefinition:
    """Parse and validate; raises DefinitionError with every problem found."""
    try:
        document = load_source(data, filename=filename)
    except SourceError as error:
        raise DefinitionError(
            [Problem("", p.code, p.message, p.line, p.column) for p in error.problems]
        ) from None
    prefix, mapping, problems = _unwrap(document.value)
    if problems:
        raise DefinitionError([_locator(document, ())(problem) for problem in problems])
    locate = _locator(document, prefix)
    try:
        definition = models.ProcessDefinition.model_validate(mapping)
    except ValidationError as error:
        located = [locate(p) for p in _problems_from_validation(error, mapping)]
        raise DefinitionError(sorted(located, key=_position)) from None
    checked = check_definition(definition, server_profile=profile is Profile.SERVER)
    if checked:
        raise DefinitionError(sorted((locate(problem) for problem in checked), key=_position))
    return definition


def _position(problem: Problem) -> tuple[int, int]:
    return (problem.line or 0, problem.column or 0)


def _locator(document: SourceDocument, prefix: PathTuple) -> Callable[[RawProblem], Problem]:
    def locate(problem: RawProblem) -> Problem:
        full = _as_written(document.value, prefix + problem.path)
        position = document.locate(full)
        line, column = position if position else (None, None)
        return Problem(format_path(full), problem.code, problem.message, line, column)

    return locate


def _as_written(data: Any, path: PathTuple) -> PathTuple:
    """The path as the file spells it: the models normalize map-form step inputs
    (`inputs: {name: "${...}"}`) into a list, so ``inputs[1].value`` is ``inputs.<name>``."""
    written: list[str | int] = []
    current = data
    parts = list(path)
    while parts:
        part = parts.pop(0)
        if isinstance(current, dict) and isinstance(part, int) and 0 <= part < len(current):
            part = list(current)[part]
            if parts and parts[0] == "value":
                parts.pop(0)
        written.append(part)
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            current = None
    return tuple(written)


def _unwrap(value: Any) -> tuple[PathTuple, dict[str, Any], list[RawProblem]]:
    """Find the process mapping in either the wrapped or the flat form.

    Returns the mapping's path prefix in the file, the mapping (with the format version
    folded in as ``opensop``) and problems whose paths are relative to the FILE.
    """
    if not isinstance(value, dict):
        return (), {}, [RawProblem((), "not_a_mapping", "a process file must be a mapping")]
    problems: list[RawProblem] = []
    format_version = scalar_text(value.get("opensop", "0.1"))
    if not isinstance(format_version, str) or format_version not in SUPPORTED_FORMAT_VERSIONS:
        problems.append(
            RawProblem(
                ("opensop",),
                "unsupported_format_version",
                f"opensop format version {_short(format_version)} is not supported; "
                f"use one of {', '.join(SUPPORTED_FORMAT_VERSIONS)}",
            )
        )
    prefix: PathTuple = ()
    if isinstance(value.get("process"), dict):
        prefix = ("process",)
        problems.extend(
            _unknown_key((key,), key, {"opensop", "process"})
            for key in value
            if key not in ("opensop", "process")
        )
        mapping = dict(value["process"])
        if "opensop" in mapping:
            problems.append(
                RawProblem(
                    ("process", "opensop"),
                    "unknown_key",
                    "`opensop` belongs at the top of the file, not inside `process`",
                )
            )
    elif "process" in value:
        return (), {}, [RawProblem(("process",), "wrong_type", "`process` must be a mapping")]
    else:
        mapping = {k: v for k, v in value.items() if k != "opensop"}
    mapping["opensop"] = format_version
    return prefix, mapping, problems


def _unknown_key(path: PathTuple, key: Any, allowed: set[str] | frozenset[str]) -> RawProblem:
    message = f"unknown key '{key}'"
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
    if close:
        message += f"; did you mean '{close[0]}'?"
    elif allowed and len(allowed) <= 40:
        message += f"; expected one of: {', '.join(sorted(allowed))}"
    return RawProblem(path, "unknown_key", message)


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "int_from_float": "a whole number",
}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _problems_from_validation(error: ValidationError, data: dict[str, Any]) -> list[RawProblem]:
    problems: list[RawProblem] = []
    seen: set[tuple[PathTuple, str]] = set()
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        path = _data_path(loc, data, keep_last=item["type"] == "missing")
        problem = _problem_for(item, loc, path)
        if problem is None:
            continue
        key = (problem.path, problem.code)
        if key in seen:  # a union reports one failure per member; one is enough
            continue
        seen.add(key)
        problems.append(problem)
    return problems


def _problem_for(item: Any, loc: tuple[Any, ...], path: PathTuple) -> RawProblem | None:
    kind = item["type"]
    given = item.get("input")
    last = str(path[-1]) if path else ""
    if kind == "extra_forbidden":
        return _unknown_key(path, last, _allowed_keys(loc[:-1]))
    if kind == "missing":
        return RawProblem(path, "missing_key", f"missing required key '{last}'")
    if kind == "union_tag_invalid":
        expected = item.get("ctx", {}).get("expected_tags", "")
        tags = [t.strip(" '") for t in str(expected).split(",")]
        message = f"unknown type '{_tag_of(item)}'"
        close = difflib.get_close_matches(_tag_of(item), tags, n=1, cutoff=0.6)
        message += (
            f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(tags)}"
        )
        code = "unknown_step_type" if "steps" in path or "body" in path else "invalid_value"
        return RawProblem((*path, "type"), code, message)
    if kind == "union_tag_not_found":
        return RawProblem((*path, "type"), "missing_key", "missing required key 'type'")
    if kind in ("literal_error", "enum"):
        expected = str(item.get("ctx", {}).get("expected", ""))
        message = f"must be {expected} (got {_short(given)})"
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        close = difflib.get_close_matches(str(given), choices, n=1, cutoff=0.6)
        if close:
            message = f"{_short(given)} is not allowed; did you mean '{close[0]}'?"
        return RawProblem(path, "invalid_value", message)
    if kind == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") != (
        models.SLUG_PATTERN
    ):
        return RawProblem(
            path,
            "invalid_name",
            f"{_short(given)} does not match the required pattern "
            f"{item.get('ctx', {}).get('pattern')}",
        )
    if kind == "string_pattern_mismatch":
        return RawProblem(
            path,
            "invalid_name",
            f"{_short(given)} is not a valid name: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit",
        )
    if kind in _TYPE_NAMES:
        return RawProblem(
            path, "wrong_type", f"expected {_TYPE_NAMES[kind]}, got {_describe(given)}"
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return RawProblem(path, "out_of_range", f"{item['msg'].lower()} (got {_short(given)})")
    if kind == "too_short" and len(given or ()) >= item.get("ctx", {}).get("min_length", 1):
        return None  # pydantic's echo of items that failed on their own; already reported
    if kind in ("too_short", "too_long", "string_too_long", "string_too_short"):
        return RawProblem(path, "invalid_length", item["msg"])
    message = str(item["msg"]).removeprefix("Value error, ")
    return RawProblem(path, "invalid_value", message)


def _tag_of(item: Any) -> str:
    return str(item.get("ctx", {}).get("tag", item.get("input")))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _data_path(loc: tuple[Any, ...], data: Any, *, keep_last: bool) -> PathTuple:
    """Map a pydantic location to a path in the file, dropping union member names."""
    path: list[str | int] = []
    current = data
    entered_union = False
    for index, part in enumerate(loc):
        is_last = index == len(loc) - 1
        if entered_union and not is_last and part == current.get("type"):
            # The discriminator tag (a step's or trigger's type), not a key in the file,
            # even when the type has a block of the same name (`loop: {...}`).
            entered_union = False
            continue
        entered_union = False
        if (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and part < len(current)
        ):
            path.append(part)
            current = current[part]
            entered_union = isinstance(current, dict) and "type" in current
        elif is_last and keep_last:
            path.append(part)
        # else: a discriminator tag or union member name, not a place in the file
    return tuple(path)


def _allowed_keys(loc: tuple[Any, ...]) -> frozenset[str]:
    """The keys the model at ``loc`` accepts, for "did you mean" suggestions."""
    model: Any = models.ProcessDefinition
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(model, dict):  # a discriminated union: part is the tag
            model = model.get(part)
            if model is None:
                return frozenset()
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return frozenset()
        field = _field_named(model, str(part))
        if field is None:
            return frozenset()
        model = _model_in(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return frozenset(f.alias or name for name, f in model.model_fields.items())
    return frozenset()


def _field_named(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _model_in(annotation: Any) -> Any:
    """The model class inside an annotation, or {tag: class} for a union of models."""
    found: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            found.append(current)
            continue
        origin = typing.get_origin(current)
        if origin is typing.Annotated:
            stack.append(typing.get_args(current)[0])
        elif origin in (typing.Union, types.UnionType, tuple, list, dict):
            stack.extend(a for a in typing.get_args(current) if a is not Ellipsis)
    if len(found) == 1:
        return found[0]
    by_tag: dict[str, type[BaseModel]] = {}
    for cls in found:
        type_field = cls.model_fields.get("type")
        if type_field is not None:
            for tag in typing.get_args(type_field.annotation):
                by_tag[str(tag)] = cls
    return by_tag or None
