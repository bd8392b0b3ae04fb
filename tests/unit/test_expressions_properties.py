"""Property tests: the language never crashes, never evaluates Python, never recurses deep."""

from __future__ import annotations

import builtins
import contextlib
import os
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opensop.definition.expressions import (
    MISSING,
    ExpressionError,
    Index,
    Key,
    Reference,
    Segment,
    Star,
    UnresolvedReference,
    parse_condition,
    parse_reference,
    parse_template,
    resolve,
    values_equal,
)

PROPERTIES = settings(deadline=None, max_examples=300)

NAMES = ["a", "b", "x", "items", "review-1", "2fa", "steps", "outputs", "process", "inputs"]
FRAGMENTS = [
    "(", ")", "[", "]", ",", " ", "\n", "==", "!=", "<", "<=", ">", ">=", "!", "&&", "||",
    "and", "or", "not", "in", "true", "false", "null", "nil", "'", '"', "\\", "-", ".", "*",
    "1", "2.5", "1e3", "-4", "x", "a.b", "[*]", "[0]", "steps.review-1.outputs.ok", "=",
    "$", "{", "}", "${", "True", "__class__",
]  # fmt: skip


# --- Strategies --------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
contexts = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4), json_values, max_size=6)

segment_texts = st.sampled_from(
    [f".{name}" for name in NAMES] + ["[0]", "[1]", "[*]", "['odd key']"]
)
reference_texts = st.builds(
    lambda head, tail: head + "".join(tail),
    st.sampled_from([n for n in NAMES if not n[0].isdigit()] + ["_y", "loop"]),
    st.lists(segment_texts, max_size=4),
)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


literal_texts = (
    st.integers(min_value=-(10**12), max_value=10**12).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.text(max_size=6).map(_quote)
    | st.sampled_from(["true", "false", "null", "nil", "[]"])
)


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    operators = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
    joiners = st.sampled_from([" and ", " or ", " && ", " || ", "\n&& "])
    return (
        st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner, operators, inner)
        | st.builds(lambda a, j, b: f"{a}{j}{b}", inner, joiners, inner)
        | st.builds(lambda op, a: f"{op}({a})", st.sampled_from(["not ", "!", "! "]), inner)
        | st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]")
    )


condition_texts = st.recursive(literal_texts | reference_texts, _compound, max_leaves=12)
bare_roots = st.none() | st.sampled_from([("outputs",), ("steps", "x", "outputs"), ()])


# --- Parsing never crashes ---------------------------------------------------------------


@PROPERTIES
@given(st.text(max_size=200) | st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_parse_condition_returns_or_raises_expression_error(text: str) -> None:
    try:
        condition = parse_condition(text)
    except ExpressionError as error:
        assert 0 <= error.position <= len(text)
        assert error.message
    else:
        assert isinstance(condition.evaluate({}), bool)


@PROPERTIES
@given(st.text(max_size=200) | st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_parse_reference_and_template_return_or_raise_expression_error(text: str) -> None:
    for parse in (parse_reference, parse_template):
        try:
            parse(text)
        except ExpressionError as error:
            assert 0 <= error.position <= len(text)


# --- Evaluation never crashes ------------------------------------------------------------


@PROPERTIES
@given(condition_texts, contexts, bare_roots)
def test_valid_conditions_evaluate_to_a_bool_against_any_json_context(
    text: str, context: dict[str, Any], bare_root: tuple[str, ...] | None
) -> None:
    try:
        condition = parse_condition(text)
    except ExpressionError as error:
        # Generated syntax is valid; only the size limits may refuse it.
        assert "levels deep" in error.message or "tokens" in error.message, error.message
        return
    assert isinstance(condition.evaluate(context, bare_root=bare_root), bool)
    condition.value(context, bare_root=bare_root)
    for reference in condition.references():
        resolve(reference, context, bare_root=bare_root)


@PROPERTIES
@given(json_values, json_values)
def test_equality_is_symmetric(left: Any, right: Any) -> None:
    assert values_equal(left, right) is values_equal(right, left)


@PROPERTIES
@given(json_values)
def test_equality_is_reflexive_for_values_without_nan(value: Any) -> None:
    rendered = repr(value)
    if "nan" not in rendered:
        assert values_equal(value, value)


@PROPERTIES
@given(
    st.lists(
        st.text(max_size=6).map(Key) | st.integers(0, 99).map(Index) | st.just(Star()),
        max_size=6,
    ),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,5}", fullmatch=True),
)
def test_reference_text_round_trips(tail: list[Segment], head: str) -> None:
    reference = Reference.of(Key(head), *tail)
    assert parse_reference(reference.text) == reference


@PROPERTIES
@given(st.text(max_size=100).filter(lambda text: "$" not in text))
def test_text_without_a_dollar_renders_as_itself(text: str) -> None:
    template = parse_template(text)
    assert template.is_constant
    assert template.render({}) == text


@PROPERTIES
@given(reference_texts, contexts)
def test_a_single_reference_template_renders_the_resolved_value(
    text: str, context: dict[str, Any]
) -> None:
    template = parse_template("${" + text + "}")
    expected = resolve(parse_reference(text), context)
    try:
        rendered = template.render(context)
    except UnresolvedReference:
        assert expected is MISSING
        return
    assert rendered == expected


# --- Nothing is ever executed ------------------------------------------------------------

ATTACKS = [
    "__import__('os').system('touch pwned')",
    "open('pwned', 'w')",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__.__init__.__globals__",
    "eval('1')",
    "exec('import os')",
    "compile('1', 'f', 'eval')",
    "lambda: open('pwned', 'w')",
    "[x for x in y]",
    "{'a': 1}",
    "1 + 1",
    "f'{x}'",
    "import os",
    "os.system('touch pwned')",
    "__builtins__",
    "__builtins__.open",
    "globals()['__builtins__']",
    "x; open('pwned', 'w')",
    "`touch pwned`",
    "$(touch pwned)",
]


def _forbidden(*args: Any, **kwargs: Any) -> NoReturn:
    raise AssertionError("the expression language called eval/exec/compile")


@pytest.mark.parametrize("text", ATTACKS)
def test_python_is_never_executed(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, _forbidden)
    context: dict[str, Any] = {"x": {"a": 1}, "y": [1], "os": {}, "__builtins__": {}}
    try:
        condition = parse_condition(text)
    except ExpressionError:
        pass
    else:
        # What parses is only ever a harmless reference (or literal) lookup.
        assert condition.value(context) in (None, {}, {"a": 1}, [1], True, False)
    for template_text in ("${" + text + "}", "pre ${" + text + "} post"):
        with contextlib.suppress(ExpressionError, UnresolvedReference):
            parse_template(template_text).render(context)
    assert os.listdir(tmp_path) == []


def test_dunder_paths_are_just_missing_keys() -> None:
    context = {"x": {"a": 1}}
    assert parse_condition("x.__class__ == null").evaluate(context)
    assert parse_condition("__builtins__").value(context) is None
