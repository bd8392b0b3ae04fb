"""Conditions: parsing, the spec's semantics, errors with positions, limits."""

from __future__ import annotations

from typing import Any

import pytest

from opensop.definition.expressions import (
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_TOKENS,
    MISSING,
    ExpressionError,
    Reference,
    is_truthy,
    parse_condition,
    parse_reference,
    values_equal,
)

CONTEXT: dict[str, Any] = {
    "process": {"inputs": {"amount": 120, "country": "MX", "tags": ["a", "b"], "none": None}},
    "steps": {
        "review-application": {"outputs": {"decision": "approve", "score": 0.82}},
        "2fa-check": {"outputs": {"ok": True}},
        "source": {"outputs": {"messages": [{"id": 1, "text": "hi"}, {"id": 2}]}},
    },
    "trigger": {"payload": {"a": {"b": [10, 20]}}},
    "instance": {"id": "inst-1"},
    "loop": {"msg": {"id": 7}},
    "outputs": {"score": 0.3, "status": "rejected"},
    "zero": 0,
    "empty": "",
    "nothing": [],
    "flag": False,
    "null_value": None,
}


def value_of(text: str, context: dict[str, Any] | None = None) -> Any:
    return parse_condition(text).value(CONTEXT if context is None else context)


def holds(text: str, context: dict[str, Any] | None = None) -> bool:
    return parse_condition(text).evaluate(CONTEXT if context is None else context)


# --- Literals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("3.25", 3.25),
        ("-0.5", -0.5),
        ("1e3", 1000.0),
        ("2.5E-2", 0.025),
        ("'single'", "single"),
        ('"double"', "double"),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\\\\b'", "a\\b"),
        ("'line\\nbreak\\ttab'", "line\nbreak\ttab"),
        ("'\\u00e9t\\u00E9'", "été"),
        ("''", ""),
        ("true", True),
        ("false", False),
        ("null", None),
        ("nil", None),
        ("[]", []),
        ("[1, 'a', null]", [1, "a", None]),
        ("[1, [2, [3]],]", [1, [2, [3]]]),
    ],
)
def test_literal_values(text: str, expected: Any) -> None:
    result = value_of(text)
    assert result == expected
    assert type(result) is type(expected)


def test_integer_literal_stays_an_integer_and_decimal_a_float() -> None:
    assert type(value_of("10")) is int
    assert type(value_of("10.0")) is float


# --- Equality ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1.0", True),
        ("1 == 1", True),
        ("0.1 == 0.10", True),
        ('"1" == 1', False),
        ("'1' == '1'", True),
        ("true == 1", False),
        ("false == 0", False),
        ("1 == true", False),
        ("true == true", True),
        ("null == null", True),
        ("nil == null", True),
        ("null == false", False),
        ("null == 0", False),
        ("'' == null", False),
        ("[1, 2] == [1.0, 2]", True),
        ("[1, 2] == [2, 1]", False),
        ("[1] == [1, 1]", False),
        ("[true] == [1]", False),
        ("[[1, 'a']] == [[1.0, 'a']]", True),
        ("'a' != 'b'", True),
        ("1 != 1.0", False),
        ("true != 1", True),
        ("null != null", False),
    ],
)
def test_equality(text: str, expected: bool) -> None:
    assert holds(text) is expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1.0, 2], "a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": 1}, {"b": 1}, False),
        ({"a": True}, {"a": 1}, False),
        ((1, 2), [1, 2], True),
        ({"a": None}, {}, False),
        (MISSING, None, True),
        ([], {}, False),
    ],
)
def test_values_equal_is_structural(left: Any, right: Any, expected: bool) -> None:
    assert values_equal(left, right) is expected
    assert values_equal(right, left) is expected


def test_values_equal_terminates_on_cyclic_data() -> None:
    left: list[Any] = [1]
    left.append(left)
    right: list[Any] = [1]
    right.append(right)
    assert values_equal(left, right)


def test_equality_of_objects_from_the_context() -> None:
    context = {"a": {"x": [1, {"y": 2}]}, "b": {"x": [1.0, {"y": 2}]}, "c": {"x": []}}
    assert holds("a == b", context)
    assert not holds("a == c", context)


# --- Ordering ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 < 2", True),
        ("2 < 1", False),
        ("1 <= 1.0", True),
        ("3 > 2.5", True),
        ("2 >= 3", False),
        ("-1 < 0", True),
        ("'a' < 'b'", True),
        ("'b' <= 'a'", False),
        ("'abc' >= 'abc'", True),
        ("'10' < 9", False),
        ("'10' > 9", False),
        ("true > false", False),
        ("true >= 1", False),
        ("null < 1", False),
        ("null >= null", False),
        ("1 > null", False),
        ("[1] < [2]", False),
        ("missing.value < 5", False),
        ("missing.value >= 5", False),
    ],
)
def test_ordering_only_between_two_numbers_or_two_strings(text: str, expected: bool) -> None:
    assert holds(text) is expected


# --- Truthiness --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zero", True),
        ("empty", True),
        ("nothing", True),
        ("0", True),
        ("''", True),
        ("[]", True),
        ("flag", False),
        ("null_value", False),
        ("false", False),
        ("null", False),
        ("no.such.path", False),
        ("process.inputs.none", False),
    ],
)
def test_only_false_and_null_are_falsy(text: str, expected: bool) -> None:
    assert holds(text) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(False, False), (None, False), (MISSING, False), (0, True), ("", True), ({}, True)],
)
def test_is_truthy(value: Any, expected: bool) -> None:
    assert is_truthy(value) is expected


def test_blank_condition_is_true() -> None:
    for text in ("", "   ", "\n\t\n"):
        condition = parse_condition(text)
        assert condition.evaluate({}) is True
        assert condition.references() == ()


# --- Logic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true and true", True),
        ("true and false", False),
        ("true && null", False),
        ("false or true", True),
        ("false || null", False),
        ("null or false", False),
        ("not true", False),
        ("not null", True),
        ("!false", True),
        ("!!zero", True),
        ("not not not false", True),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("not false and false", False),
        ("not (false and false)", True),
        ("!(1 == 2)", True),
        ("not 1 == 2", True),
        ("!zero == 1", True),
        ("1 == 1 and 2 == 2 and 3 == 4", False),
        ("1 == 2 or 2 == 3 or 'x' == 'x'", True),
    ],
)
def test_logical_operators_and_precedence(text: str, expected: bool) -> None:
    assert value_of(text) is expected


@pytest.mark.parametrize("text", ["zero and empty", "zero or flag", "not zero", "1 and 'a'"])
def test_and_or_not_answer_booleans(text: str) -> None:
    assert isinstance(value_of(text), bool)


def test_and_short_circuits_but_never_errors_either_way() -> None:
    assert holds("false and missing.x[3].y < 1") is False
    assert holds("true or missing.x[*] == []") is True


def test_multi_line_conditions_joined_with_ampersands() -> None:
    text = (
        "steps.fetch-slack.outputs.success == true &&\n"
        "steps.fetch-gmail.outputs.success == true &&\n"
        "steps.fetch-calendar.outputs.success == true\n"
    )
    outputs = {"outputs": {"success": True}}
    context = {"steps": {"fetch-slack": outputs, "fetch-gmail": outputs, "fetch-calendar": {}}}
    condition = parse_condition(text)
    assert condition.evaluate(context) is False
    context["steps"]["fetch-calendar"] = outputs
    assert condition.evaluate(context) is True
    assert len(condition.references()) == 3


# --- Membership --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'MX' in ['US', 'MX']", True),
        ("'CA' in ['US', 'MX']", False),
        ("1 in [1.0, 2]", True),
        ("true in [1]", False),
        ("null in [null]", True),
        ("[1] in [[1], [2]]", True),
        ("'CA' not in ['US', 'MX']", True),
        ("'US' not in ['US', 'MX']", False),
        ("process.inputs.country in ['US', 'MX']", True),
        ("'a' in process.inputs.tags", True),
        ("'z' in process.inputs.tags", False),
        ("'z' not in process.inputs.tags", True),
        ("'a' in 'abc'", False),
        ("'a' in missing.list", False),
        ("'a' not in missing.list", True),
        ("1 in steps.source.outputs.messages[*].id", True),
        ("3 in steps.source.outputs.messages[*].id", False),
        ("'x' in [process.inputs.country, 'x']", True),
        ("[1,2] in null", False),
    ],
)
def test_membership(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_in_with_a_non_list_right_side_is_false() -> None:
    assert not holds("'a' in thing", {"thing": {"a": 1}})
    assert not holds("1 in thing", {"thing": 1})


# --- References inside conditions --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps.review-application.outputs.decision == 'approve'", True),
        ("steps.2fa-check.outputs.ok == true", True),
        ("process.inputs.amount > 100", True),
        ("inputs.amount > 100", True),
        ("trigger.payload.a.b[1] == 20", True),
        ("trigger.payload.a.b[2] == null", True),
        ("instance.id == 'inst-1'", True),
        ("loop.msg.id == 7", True),
        ("steps.source.outputs.messages[*].id == [1, 2]", True),
        ("steps.source.outputs.messages[*].text == ['hi']", True),
        ("steps.unknown.outputs.x == null", True),
        ("steps.unknown.outputs.x != null", False),
    ],
)
def test_references_resolve_in_conditions(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_unresolvable_reference_is_null_in_value() -> None:
    assert value_of("steps.unknown.outputs.x") is None
    assert value_of("steps.review-application.outputs") == {"decision": "approve", "score": 0.82}


def test_bare_names_resolve_under_the_given_root() -> None:
    condition = parse_condition("score < 0.4 and outputs.status == 'rejected'")
    assert condition.evaluate(CONTEXT) is False  # a bare `score` is not at the top level
    assert condition.evaluate(CONTEXT, bare_root=("outputs",)) is True
    required_if = parse_condition("decision == 'approve'")
    root = ("steps", "review-application", "outputs")
    assert required_if.evaluate(CONTEXT, bare_root=root) is True


def test_bare_root_leaves_known_roots_alone() -> None:
    condition = parse_condition("instance.id == 'inst-1'")
    assert condition.evaluate(CONTEXT, bare_root=("outputs",)) is True


def test_references_lists_every_reference_once_in_reading_order() -> None:
    condition = parse_condition(
        "(a.b == 1 || steps.x.outputs.y in [c, 'd']) && !a.b && e[*].f not in g"
    )
    assert [ref.text for ref in condition.references()] == [
        "a.b",
        "steps.x.outputs.y",
        "c",
        "e[*].f",
        "g",
    ]
    assert all(isinstance(ref, Reference) for ref in condition.references())
    assert condition.references()[1] == parse_reference("steps.x.outputs.y")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("status == in-progress", ["status", "in-progress"]),
        ("not-done", ["not-done"]),
        ("in-review in [1]", ["in-review"]),
        ("and_more or nil_count > 1", ["and_more", "nil_count"]),
        ("true-ish", ["true-ish"]),
    ],
)
def test_keywords_joined_with_hyphens_or_underscores_are_references(
    text: str, names: list[str]
) -> None:
    assert [ref.text for ref in parse_condition(text).references()] == names


def test_whitespace_and_newlines_anywhere_between_tokens() -> None:
    assert holds("\n  (\n 1\t==\r\n1.0 )\n&&\n[ 1 ,\n 2 ] == [1,2]  \n")


def test_operators_need_no_spaces() -> None:
    assert holds("inputs.amount>=120&&inputs.amount<=120||false")
    assert holds("inputs.amount!=-1")


# --- Parse errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("x ==", 4, "expected a value after '=='"),
        ("x == )", 5, "expected a value after '=='"),
        ("== 1", 0, "expected a value at column 1"),
        ("(x", 2, "expected ')' to close the '(' at column 1"),
        ("(x == 1", 7, "the end of the condition"),
        ("x)", 1, "there is no '(' to close"),
        ("x y", 2, "expected 'and', 'or' or a comparison after 'x'"),
        ("(x y)", 3, "expected 'and', 'or' or a comparison"),
        ("a < b < c", 6, "comparisons cannot be chained"),
        ("a == b in [1]", 7, "comparisons cannot be chained"),
        ("x = 1", 2, "use '=='"),
        ("x & y", 2, "use '&&'"),
        ("x | y", 2, "use '||'"),
        ("True", 0, "write 'true' instead of 'True'"),
        ("x == None", 5, "write 'null' instead of 'None'"),
        ("x == 1 AND y", 7, "write 'and' instead of 'AND'"),
        ("'abc", 0, "never closed"),
        ('x == "abc', 5, "never closed"),
        ("'a\\qb'", 2, "unknown escape '\\q'"),
        ("1.2.3", 0, "malformed number"),
        ("12abc", 0, "malformed number"),
        ("- 1", 0, "'-' must be followed by a number"),
        ("x == 1e999", 5, "too large"),
        ("x.", 2, "expected a field name after '.'"),
        ("x[-1]", 2, "indexes count from 0"),
        ("x[1", 3, "expected ']'"),
        ("a && && b", 5, "expected a value after '&&'"),
        ("x ||", 4, "expected a value after '||'"),
        ("not", 3, "expected a value after 'not'"),
        ("not in [1]", 4, "expected a value after 'not'"),
        ("[1, 2", 5, "expected ',' or ']' in the list opened at column 1"),
        ("[1 2]", 3, "expected 'and', 'or' or a comparison after '1'"),
        ("[,]", 1, "expected a value after '['"),
        ("x == 1 ,", 7, "unexpected ','"),
        ("x ~ y", 2, "unexpected character '~'"),
        ("x == 1 ]", 7, "there is no '[' to close"),
        (".5 > 1", 0, "unexpected character '.'"),
        ("f(x)", 1, "looks like a function call"),
    ],
)
def test_parse_errors_name_the_problem_and_position(
    text: str, position: int, fragment: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_condition(text)
    assert caught.value.position == position
    assert fragment in caught.value.message
    assert str(caught.value) == caught.value.message


def test_error_message_counts_columns_from_one() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_condition("x == ")
    assert caught.value.message == (
        "expected a value after '==' at column 6, found the end of the condition"
    )


def test_error_in_a_multi_line_condition_names_the_line() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_condition("a == 1 &&\n  b == ")
    assert "at line 2, column 8" in caught.value.message
    assert caught.value.position == 17


@pytest.mark.parametrize("text", ["True", "FALSE", "Null", "NIL", "Or", "NOT x"])
def test_literals_and_keywords_are_lowercase_only(text: str) -> None:
    with pytest.raises(ExpressionError, match="lowercase"):
        parse_condition(text)


def test_a_miscased_keyword_is_fine_as_part_of_a_path() -> None:
    assert holds("outputs.True == null")


# --- Limits ------------------------------------------------------------------------------


def test_text_longer_than_the_limit_is_refused() -> None:
    text = "x == '" + "a" * MAX_EXPRESSION_LENGTH + "'"
    with pytest.raises(ExpressionError, match="4,096") as caught:
        parse_condition(text)
    assert caught.value.position == MAX_EXPRESSION_LENGTH


def test_text_at_the_limit_is_accepted() -> None:
    filler = "a" * (MAX_EXPRESSION_LENGTH - len("x == ''"))
    assert not holds(f"x == '{filler}'", {})


def test_too_many_tokens_is_refused() -> None:
    ok = " or ".join(["true"] * (MAX_TOKENS // 2))  # 511 tokens
    assert holds(ok)
    with pytest.raises(ExpressionError, match=f"more than {MAX_TOKENS} tokens"):
        parse_condition(ok + " or true")


@pytest.mark.parametrize(
    ("opening", "closing"),
    [("(", ")"), ("[", "]"), ("not ", ""), ("!(", ")")],
)
def test_nesting_deeper_than_the_limit_is_refused(opening: str, closing: str) -> None:
    levels = MAX_DEPTH if opening != "!(" else MAX_DEPTH // 2
    assert parse_condition(opening * levels + "true" + closing * levels)
    with pytest.raises(ExpressionError, match="levels deep"):
        parse_condition(opening * (levels + 1) + "true" + closing * (levels + 1))


def test_deepest_nesting_allowed_evaluates_without_recursion_trouble() -> None:
    text = "(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH
    assert holds(text)
    lists = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert holds(f"{lists} == {lists}")
