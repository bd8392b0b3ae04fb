from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opensop.definition.fields import Field, FieldType, StringFormat
from opensop.definition.text import SourceInt
from opensop.definition.values import (
    Violation,
    ViolationCode,
    apply_defaults,
    validate_values,
)

R = ViolationCode.REQUIRED
T = ViolationCode.TYPE_MISMATCH
E = ViolationCode.NOT_IN_ENUM
F = ViolationCode.INVALID_FORMAT
U = ViolationCode.UNKNOWN_FIELD


def field(name: str = "x", **declared: Any) -> Field:
    # model_validate so the YAML spellings (`schema`, `from`) work as in a process file.
    return Field.model_validate({"name": name, **declared})


def found(violations: list[Violation]) -> list[tuple[str, ViolationCode, Any]]:
    return [(v.field, v.code, v.expected) for v in violations]


def check_one(declared: dict[str, Any], value: Any) -> list[tuple[str, ViolationCode, Any]]:
    return found(validate_values([field(**declared)], {"x": value}))


# (declared field, submitted value for "x", expected (field, code, expected) triples)
CASES: list[tuple[str, dict[str, Any], Any, list[tuple[str, ViolationCode, Any]]]] = [
    # string
    ("string-ok", {"type": "string"}, "hello", []),
    ("string-empty-is-present", {"type": "string", "required": True}, "", []),
    ("string-number", {"type": "string"}, 5, [("x", T, "string")]),
    ("string-min-length", {"type": "string", "min_length": 3}, "ab", [("x", F, "min_length 3")]),
    (
        "string-empty-min-length",
        {"min_length": 1, "required": True},
        "",
        [("x", F, "min_length 1")],
    ),
    ("string-max-length", {"type": "string", "max_length": 2}, "abc", [("x", F, "max_length 2")]),
    # email
    ("email-ok", {"format": "email"}, "ana@example.com", []),
    ("email-plus-subdomain", {"format": "email"}, "a.b+c@mail.example.co.uk", []),
    ("email-no-at", {"format": "email"}, "ana.example.com", [("x", F, "email")]),
    ("email-two-at", {"format": "email"}, "a@b@example.com", [("x", F, "email")]),
    ("email-no-dot", {"format": "email"}, "ana@localhost", [("x", F, "email")]),
    ("email-space", {"format": "email"}, "ana maria@example.com", [("x", F, "email")]),
    ("email-empty-local", {"format": "email"}, "@example.com", [("x", F, "email")]),
    ("email-trailing-dot", {"format": "email"}, "ana@example.", [("x", F, "email")]),
    # uri
    ("uri-https", {"format": "uri"}, "https://example.com/a?b=1", []),
    ("uri-mailto", {"format": "uri"}, "mailto:ana@example.com", []),
    ("uri-urn", {"format": "uri"}, "urn:isbn:0451450523", []),
    ("uri-file", {"format": "uri"}, "file:///tmp/report.pdf", []),
    ("uri-no-scheme", {"format": "uri"}, "example.com/path", [("x", F, "uri")]),
    ("uri-host-port", {"format": "uri"}, "localhost:8080", [("x", F, "uri")]),
    ("uri-http-no-host", {"format": "uri"}, "http:foo", [("x", F, "uri")]),
    ("uri-space", {"format": "uri"}, "https://example.com/a b", [("x", F, "uri")]),
    ("uri-bad-ipv6", {"format": "uri"}, "http://[::1", [("x", F, "uri")]),
    # string formats date / date-time
    ("format-date-ok", {"format": "date"}, "2024-02-29", []),
    ("format-date-not-real", {"format": "date"}, "2024-02-30", [("x", F, "date")]),
    ("format-date-time-z", {"format": "date-time"}, "2024-01-15T10:30:00Z", []),
    ("format-datetime-spelling", {"format": "datetime"}, "2024-01-15", [("x", F, "datetime")]),
    # number
    ("number-int", {"type": "number"}, 3, []),
    ("number-float", {"type": "number"}, -2.5, []),
    ("number-string", {"type": "number"}, "3", [("x", T, "number")]),
    ("number-bool", {"type": "number"}, True, [("x", T, "number")]),
    ("number-nan", {"type": "number"}, float("nan"), [("x", T, "number")]),
    ("number-inf", {"type": "number"}, float("inf"), [("x", T, "number")]),
    ("number-minus-inf", {"type": "number"}, float("-inf"), [("x", T, "number")]),
    ("number-minimum", {"type": "number", "minimum": 0}, -1, [("x", F, "minimum 0")]),
    ("number-maximum", {"type": "number", "maximum": 9.5}, 10, [("x", F, "maximum 9.5")]),
    ("number-in-range", {"type": "number", "minimum": 0, "maximum": 10}, 10, []),
    # integer
    ("integer-ok", {"type": "integer"}, 42, []),
    ("integer-integral-float", {"type": "integer"}, 3.0, []),
    ("integer-fraction", {"type": "integer"}, 3.5, [("x", T, "integer")]),
    ("integer-bool", {"type": "integer"}, False, [("x", T, "integer")]),
    ("integer-huge", {"type": "integer"}, 10**40, []),
    ("integer-minimum", {"type": "integer", "minimum": 18}, 12, [("x", F, "minimum 18")]),
    # boolean
    ("boolean-true", {"type": "boolean"}, True, []),
    ("boolean-false", {"type": "boolean"}, False, []),
    ("boolean-string-true", {"type": "boolean"}, "true", [("x", T, "boolean")]),
    ("boolean-string-false", {"type": "boolean"}, "false", [("x", T, "boolean")]),
    ("boolean-one", {"type": "boolean"}, 1, [("x", T, "boolean")]),
    # enum
    ("enum-ok", {"type": "enum", "values": ["US", "MX"]}, "MX", []),
    ("enum-case", {"type": "enum", "values": ["US", "MX"]}, "us", [("x", E, ("US", "MX"))]),
    ("enum-other", {"type": "enum", "values": ["US", "MX"]}, "CA", [("x", E, ("US", "MX"))]),
    ("enum-number-vs-text", {"type": "enum", "values": ["1", "2"]}, 1, [("x", E, ("1", "2"))]),
    ("enum-list", {"type": "enum", "values": ["a"]}, ["a"], [("x", E, ("a",))]),
    ("enum-no-values", {"type": "enum"}, "anything", []),
    # date / datetime types
    ("date-ok", {"type": "date"}, "2024-12-31", []),
    ("date-leap-bad", {"type": "date"}, "2023-02-29", [("x", F, "date")]),
    ("date-month-13", {"type": "date"}, "2024-13-01", [("x", F, "date")]),
    ("date-compact", {"type": "date"}, "20240101", [("x", F, "date")]),
    ("date-with-time", {"type": "date"}, "2024-01-01T00:00:00Z", [("x", F, "date")]),
    ("date-not-string", {"type": "date"}, 20240101, [("x", T, "date")]),
    ("datetime-z", {"type": "datetime"}, "2024-01-15T10:30:00Z", []),
    ("datetime-offset", {"type": "datetime"}, "2024-01-15T10:30:00+05:30", []),
    ("datetime-negative-offset", {"type": "datetime"}, "2024-01-15T10:30:00.123-0800", []),
    ("datetime-fraction", {"type": "datetime"}, "2024-01-15T10:30:00.123456Z", []),
    ("datetime-naive-minutes", {"type": "datetime"}, "2024-01-15T10:30", []),
    ("datetime-date-only", {"type": "datetime"}, "2024-01-15", [("x", F, "datetime")]),
    ("datetime-hour-25", {"type": "datetime"}, "2024-01-15T25:00:00Z", [("x", F, "datetime")]),
    ("datetime-bad-day", {"type": "datetime"}, "2024-02-30T10:00:00Z", [("x", F, "datetime")]),
    (
        "datetime-bad-offset",
        {"type": "datetime"},
        "2024-01-15T10:00:00+24:00",
        [("x", F, "datetime")],
    ),
    ("datetime-not-string", {"type": "datetime"}, 1705314600, [("x", T, "datetime")]),
    # object
    ("object-ok", {"type": "object"}, {"a": 1}, []),
    ("object-list", {"type": "object"}, [{"a": 1}], [("x", T, "object")]),
    (
        "object-schema-nested-path",
        {"type": "object", "schema": {"annual_revenue": "number", "name": "string"}},
        {"annual_revenue": "a lot", "name": "Acme", "extra": True},
        [("x.annual_revenue", T, "number")],
    ),
    (
        "object-schema-enum-syntax",
        {"type": "object", "schema": {"size": "enum[small, large]"}},
        {"size": "medium"},
        [("x.size", E, ("small", "large"))],
    ),
    (
        "object-schema-unknown-type-is-any",
        {"type": "object", "schema": {"blob": "whatever", "n": "integer"}},
        {"blob": [1, {"deep": None}], "n": None},
        [],
    ),
    (
        "object-schema-list-type",
        {"type": "object", "schema": {"tags": "string[]"}},
        {"tags": ["a", 2]},
        [("x.tags[1]", T, "string")],
    ),
    (
        "object-collection",
        {"type": "object", "collection": True, "item_schema": {"qty": "integer"}},
        [{"qty": 1}, {"qty": "two"}, "three"],
        [("x[1].qty", T, "integer"), ("x[2]", T, "object")],
    ),
    # file / reference
    ("file-ok", {"type": "file"}, "s3://bucket/report.pdf", []),
    ("file-object", {"type": "file"}, {"path": "a"}, [("x", T, "file")]),
    ("reference-ok", {"type": "reference"}, "cust_123", []),
    ("reference-number", {"type": "reference"}, 123, [("x", T, "reference")]),
    # currency
    ("currency-ok", {"type": "currency"}, {"amount": 12.5, "currency": "USD"}, []),
    (
        "currency-bad-both",
        {"type": "currency"},
        {"amount": "12.50", "currency": "usd"},
        [("x.amount", T, "number"), ("x.currency", F, "iso-4217")],
    ),
    (
        "currency-missing-parts",
        {"type": "currency"},
        {},
        [("x.amount", R, "number"), ("x.currency", R, "string")],
    ),
    ("currency-number", {"type": "currency"}, 12.5, [("x", T, "currency")]),
    # lists
    ("string-list-ok", {"type": "string[]"}, ["a", ""], []),
    ("string-list-empty", {"type": "string[]", "required": True}, [], []),
    ("string-list-bad-item", {"type": "string[]"}, ["a", "b", 3], [("x[2]", T, "string")]),
    ("string-list-not-list", {"type": "string[]"}, "a", [("x", T, "string[]")]),
    ("string-list-null-item", {"type": "string[]"}, [None], [("x[0]", T, "string")]),
    (
        "string-list-format",
        {"type": "string[]", "format": "email"},
        ["a@b.co", "nope"],
        [("x[1]", F, "email")],
    ),
    (
        "string-list-values",
        {"type": "string[]", "values": ["red", "blue"]},
        ["red", "green"],
        [("x[1]", E, ("red", "blue"))],
    ),
    (
        "string-list-min-items",
        {"type": "string[]", "min_length": 1},
        [],
        [("x", F, "min_length 1")],
    ),
    (
        "number-list-bad-items",
        {"type": "number[]"},
        [1, True, "2", float("nan")],
        [("x[1]", T, "number"), ("x[2]", T, "number"), ("x[3]", T, "number")],
    ),
    (
        "object-list-item-schema",
        {"type": "object[]", "item_schema": {"sku": "string"}},
        [{"sku": "A1"}, {"sku": 7}, 5],
        [("x[1].sku", T, "string"), ("x[2]", T, "object")],
    ),
    ("file-list-bad", {"type": "file[]"}, ["a.pdf", {}], [("x[1]", T, "file")]),
    # any
    ("any-anything", {"type": "any"}, {"nested": [1, "2", None]}, []),
]


@pytest.mark.parametrize(
    ("declared", "value", "expected"),
    [pytest.param(d, v, e, id=i) for i, d, v, e in CASES],
)
def test_value_against_declared_type(
    declared: dict[str, Any], value: Any, expected: list[tuple[str, ViolationCode, Any]]
) -> None:
    assert check_one(declared, value) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({}, [("x", R, "string")], id="missing"),
        pytest.param({"x": None}, [("x", R, "string")], id="null"),
        pytest.param({"x": ""}, [], id="empty-string"),
        pytest.param({"x": False}, [("x", T, "string")], id="false-is-present-but-wrong"),
    ],
)
def test_required(data: dict[str, Any], expected: list[Any]) -> None:
    assert found(validate_values([field(required=True)], data)) == expected


@pytest.mark.parametrize("data", [{}, {"x": None}], ids=["missing", "null"])
def test_optional_may_be_missing_or_null(data: dict[str, Any]) -> None:
    assert validate_values([field(type="number")], data) == []


def test_required_enum_names_its_values() -> None:
    [violation] = validate_values([field(type="enum", values=["a", "b"], required=True)], {})
    assert violation.expected == ("a", "b")
    assert violation.to_json()["expected"] == ["a", "b"]


@pytest.mark.parametrize("data", [[], "x", 1, None, True], ids=repr)
def test_data_must_be_an_object(data: object) -> None:
    [violation] = validate_values([field()], data)
    assert (violation.field, violation.code, violation.expected) == ("", T, "object")


@pytest.mark.parametrize(
    ("allow_unknown", "expected"),
    [(False, [("surprise", U, None)]), (True, [])],
)
def test_unknown_fields(allow_unknown: bool, expected: list[Any]) -> None:
    data = {"x": "ok", "surprise": 1}
    assert found(validate_values([field()], data, allow_unknown=allow_unknown)) == expected


def test_all_violations_in_declaration_order_unknown_last() -> None:
    fields = [
        field("zeta", type="number", required=True),
        field("alpha", type="enum", values=["US", "MX"]),
        field("mid", type="string[]"),
    ]
    data = {"extra_b": 1, "alpha": "CA", "mid": ["ok", 1, 2], "extra_a": 2}
    assert found(validate_values(fields, data)) == [
        ("zeta", R, "number"),
        ("alpha", E, ("US", "MX")),
        ("mid[1]", T, "string"),
        ("mid[2]", T, "string"),
        ("extra_b", U, None),
        ("extra_a", U, None),
    ]


def _country_is_us(expression: str, data: Mapping[str, Any]) -> bool:
    # Stands in for the condition language: `country == 'US'`.
    name, _, literal = expression.partition(" == ")
    return bool(data.get(name) == literal.strip("'"))


@pytest.mark.parametrize(
    ("data", "callable_given", "expected"),
    [
        pytest.param({"country": "US"}, True, [("state", R, "string")], id="condition-true"),
        pytest.param({"country": "US", "state": None}, True, [("state", R, "string")], id="null"),
        pytest.param({"country": "MX"}, True, [], id="condition-false"),
        pytest.param({"country": "US", "state": "TX"}, True, [], id="given"),
        pytest.param({"country": "US"}, False, [], id="no-callable-ignores-it"),
    ],
)
def test_required_if(data: dict[str, Any], callable_given: bool, expected: list[Any]) -> None:
    fields = [field("country"), field("state", required_if="country == 'US'")]
    hook = _country_is_us if callable_given else None
    violations = validate_values(fields, data, required_if=hook)
    assert found(violations) == expected
    if expected:
        assert violations[0].message == "state is required when country == 'US'"


def test_required_if_cannot_change_the_data() -> None:
    def meddle(expression: str, data: Mapping[str, Any]) -> bool:
        with pytest.raises(TypeError):
            data["x"] = 1  # type: ignore[index]
        return False

    assert validate_values([field(required_if="x")], {}, required_if=meddle) == []


@pytest.mark.parametrize(
    ("declared", "value", "message"),
    [
        (
            {"name": "country", "type": "enum", "values": ["US", "MX"]},
            "CA",
            "country must be one of US, MX (got 'CA')",
        ),
        ({"name": "amount", "type": "number"}, "12", "amount must be a number (got string)"),
        ({"name": "amount", "type": "number"}, True, "amount must be a number (got boolean)"),
        ({"name": "n", "type": "number"}, float("nan"), "n must be a number (got NaN)"),
        ({"name": "n", "type": "integer"}, 2.5, "n must be a whole number (got 2.5)"),
        (
            {"name": "due", "type": "date"},
            "2024-02-30",
            "due must be a real calendar date in the form YYYY-MM-DD (got '2024-02-30')",
        ),
        (
            {"name": "code", "min_length": 3},
            "ab",
            "code must have at least 3 characters (got 2)",
        ),
    ],
)
def test_messages_read_as_sentences(declared: dict[str, Any], value: Any, message: str) -> None:
    [violation] = validate_values([field(**declared)], {declared["name"]: value})
    assert violation.message == message


def test_messages_never_echo_long_values() -> None:
    secret = "s" * 10_000
    fields = [field("e", format="email"), field("c", type="enum", values=["a"])]
    violations = validate_values(fields, {"e": secret, "c": secret, secret: 1})
    assert len(violations) == 3
    for violation in violations:
        assert "s" * 81 not in violation.message
        assert len(violation.message) < 200


def test_to_json_shape() -> None:
    [enum_v, unknown_v] = validate_values(
        [field("country", type="enum", values=["US"])], {"country": "CA", "y": 1}
    )
    assert enum_v.to_json() == {
        "field": "country",
        "code": "not_in_enum",
        "expected": ["US"],
        "message": "country must be one of US (got 'CA')",
    }
    assert unknown_v.to_json() == {
        "field": "y",
        "code": "unknown_field",
        "message": "'y' is not a declared field",
    }
    assert {enum_v, unknown_v}  # frozen and hashable


def test_apply_defaults() -> None:
    fields = [
        field("region", default="eu"),
        field("tags", type="string[]", default=["a"]),
        field("note", default="x"),
        field("count", type="integer", default=SourceInt(3, "3")),
        field("plain"),
    ]
    data = {"note": None, "other": 1}
    filled = apply_defaults(fields, data)
    assert filled == {"note": None, "other": 1, "region": "eu", "tags": ["a"], "count": 3}
    assert data == {"note": None, "other": 1}  # the input is left alone
    filled["tags"].append("b")
    assert fields[1].default == ["a"]  # a mutable default is copied, not shared


def test_defaults_then_validate_satisfies_required() -> None:
    fields = [field("region", required=True, default="eu")]
    assert validate_values(fields, {}) == [Violation("region", R, "string", "region is required")]
    assert validate_values(fields, apply_defaults(fields, {})) == []


# --- never raises ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["2024-02-29", "2024-01-15T10:30:00Z", "a@b.co", "https://x.io", "USD"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["amount", "currency"]), children, max_size=4
        )
    ),
    max_leaves=20,
)
finite_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
names = st.from_regex(r"[a-c_][a-c0-9_]{0,2}", fullmatch=True)
type_names = st.sampled_from(
    [t.value for t in FieldType] + ["enum[a, b]", "enum[]", "date-time", "nonsense", " Number "]
)
schemas = st.none() | st.dictionaries(names, type_names, max_size=3)
bounds = st.none() | st.floats()
fields_strategy = st.builds(
    Field,
    name=names,
    type=st.sampled_from(FieldType),
    required=st.booleans(),
    values=st.none() | st.lists(st.text(max_size=5), max_size=3).map(tuple),
    format=st.none() | st.sampled_from(StringFormat),
    object_schema=schemas,
    item_schema=schemas,
    required_if=st.none() | st.text(max_size=10),
    collection=st.booleans(),
    min_length=st.none() | st.integers(0, 5),
    max_length=st.none() | st.integers(0, 5),
    minimum=bounds,
    maximum=bounds,
    # Declared defaults are finite: the definition refuses .inf and .nan.
    default=st.none() | finite_json_values,
)


@settings(deadline=None, max_examples=200)
@given(
    fields=st.lists(fields_strategy, max_size=5),
    data=st.data(),
    allow_unknown=st.booleans(),
    condition_result=st.none() | st.booleans(),
)
def test_never_raises_on_any_json(
    fields: list[Field], data: st.DataObject, allow_unknown: bool, condition_result: bool | None
) -> None:
    # Half the time, key the data by the declared names so the type checks really run.
    keyed = st.fixed_dictionaries(
        {}, optional={f.name: json_values for f in fields} | {"zz": json_values}
    )
    submitted = data.draw(json_values | keyed)
    hook = None if condition_result is None else (lambda _e, _d: condition_result)

    violations = validate_values(fields, submitted, allow_unknown=allow_unknown, required_if=hook)

    assert isinstance(violations, list)
    assert all(isinstance(v, Violation) and isinstance(v.code, ViolationCode) for v in violations)
    json.dumps([v.to_json() for v in violations])
    if isinstance(submitted, dict):
        assert isinstance(apply_defaults(fields, submitted), dict)
