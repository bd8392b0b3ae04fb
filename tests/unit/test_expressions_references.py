"""References: parsing paths and resolving them against a plain context."""

from __future__ import annotations

import copy
import pickle
from types import MappingProxyType
from typing import Any

import pytest

from opensop.definition.references import (
    MAX_REFERENCE_SEGMENTS,
    MISSING,
    ExpressionError,
    Index,
    Key,
    Reference,
    Star,
    UnresolvedReference,
    parse_reference,
    require,
    resolve,
)

CONTEXT: dict[str, Any] = {
    "process": {"inputs": {"x": 1, "name": "Ada", "nested": {"deep": [0, {"k": "v"}]}}},
    "inputs": {"x": "a top-level key never shadows the alias"},
    "steps": {
        "review-application": {"outputs": {"decision": "approve"}},
        "2fa": {"outputs": {"ok": True}},
        "source": {
            "outputs": {
                "messages": [{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}, {"text": "x"}],
                "empty": [],
                "grid": [[1, 2], [3]],
            }
        },
    },
    "trigger": {"payload": {"a": {"b": [10, 20, None]}}},
    "env": {"COMPLIANCE_API_KEY": "secret"},
    "instance": {"id": "inst-1"},
    "loop": {"msg": {"id": 9}},
    "outputs": {"score": 0.3},
    "score": "top-level score",
    "payload": {"odd key!": 5, "it's": 6},
    "null_here": None,
    "text": "abc",
}


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("score", (Key("score"),)),
        ("_private", (Key("_private"),)),
        ("inputs.x", (Key("inputs"), Key("x"))),
        ("process.inputs.x", (Key("process"), Key("inputs"), Key("x"))),
        (
            "steps.review-application.outputs.decision",
            (Key("steps"), Key("review-application"), Key("outputs"), Key("decision")),
        ),
        ("steps.2fa.outputs.ok", (Key("steps"), Key("2fa"), Key("outputs"), Key("ok"))),
        (
            "trigger.payload.a.b[0]",
            (Key("trigger"), Key("payload"), Key("a"), Key("b"), Index(0)),
        ),
        ("x[*]", (Key("x"), Star())),
        ("x[*].name", (Key("x"), Star(), Key("name"))),
        ("x[12][*][0]", (Key("x"), Index(12), Star(), Index(0))),
        ("payload['odd key!']", (Key("payload"), Key("odd key!"))),
        ('payload["it\'s"]', (Key("payload"), Key("it's"))),
        ("payload['it\\'s']", (Key("payload"), Key("it's"))),
        ("x[ 0 ]", (Key("x"), Index(0))),
        ("env.NAME", (Key("env"), Key("NAME"))),
        ("a.b-c_d.e", (Key("a"), Key("b-c_d"), Key("e"))),
    ],
)
def test_parse_reference_segments(text: str, segments: tuple[Any, ...]) -> None:
    reference = parse_reference(text)
    assert reference.segments == segments
    assert reference.text == text
    assert str(reference) == text


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_reference("  inputs.x \n").text == "inputs.x"


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("1abc", 0, "starts with a letter or '_'"),
        ("-x", 0, "starts with a letter or '_'"),
        ("a.", 2, "expected a field name after '.'"),
        ("a..b", 2, "expected a field name after '.'"),
        ("a[", 2, "expected a number, '*' or a quoted key"),
        ("a[]", 2, "expected a number, '*' or a quoted key"),
        ("a[-1]", 2, "indexes count from 0"),
        ("a[x]", 2, "expected a number, '*' or a quoted key"),
        ("a[0", 3, "expected ']'"),
        ("a['b", 2, "never closed"),
        ("a b", 2, "after the reference 'a'"),
        ("a == 1", 2, "after the reference 'a'"),
        ("a()", 1, "after the reference 'a'"),
    ],
)
def test_parse_reference_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_reference(text)
    assert caught.value.position == position
    assert fragment in caught.value.message


def test_reference_segment_limit() -> None:
    assert parse_reference("a" + ".b" * (MAX_REFERENCE_SEGMENTS - 1))
    with pytest.raises(ExpressionError, match="more than 64 parts"):
        parse_reference("a" + ".b" * MAX_REFERENCE_SEGMENTS)


def test_reference_length_limit() -> None:
    with pytest.raises(ExpressionError, match="limit is 4,096"):
        parse_reference("a" * 5000)


# --- Properties and helpers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "root", "bare"),
    [
        ("process.inputs.x", "process", False),
        ("inputs.x", "inputs", False),
        ("steps.a.outputs.b", "steps", False),
        ("outputs.score", "outputs", False),
        ("env.X", "env", False),
        ("payload.a", "payload", False),
        ("score", "score", True),
        ("callback_url", "callback_url", True),
        ("COMPLIANCE_API_KEY", "COMPLIANCE_API_KEY", True),
    ],
)
def test_root_and_bare(text: str, root: str, bare: bool) -> None:
    reference = parse_reference(text)
    assert reference.root == root
    assert reference.is_bare is bare


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps.review-application.outputs.decision", ("review-application", "decision")),
        ("steps.a.outputs.list[*].id", ("a", "list")),
        ("steps.a.outputs", None),
        ("steps.a.status", None),
        ("steps.a.outputs[0]", None),
        ("process.inputs.x", None),
        ("loop.steps.a.outputs.b", None),
    ],
)
def test_step_output(text: str, expected: tuple[str, str] | None) -> None:
    assert parse_reference(text).step_output() == expected


def test_with_root_prefixes_a_bare_reference() -> None:
    rewritten = parse_reference("score[0]").with_root(("steps", "gate", "outputs"))
    assert rewritten == parse_reference("steps.gate.outputs.score[0]")
    assert rewritten.text == "steps.gate.outputs.score[0]"


def test_canonical_spells_out_the_inputs_alias() -> None:
    assert parse_reference("inputs.x").canonical().text == "process.inputs.x"
    same = parse_reference("steps.a.outputs.b")
    assert same.canonical() is same


def test_equality_ignores_spelling() -> None:
    assert parse_reference("payload['a']") == parse_reference("payload.a")
    assert hash(parse_reference("payload['a']")) == hash(parse_reference("payload.a"))


def test_reference_of_quotes_odd_keys() -> None:
    reference = Reference.of(Key("payload"), Key("odd key's"), Star(), Index(2))
    assert reference.text == "payload['odd key\\'s'][*][2]"
    assert parse_reference(reference.text) == reference


def test_a_reference_must_start_with_a_name() -> None:
    with pytest.raises(ValueError):
        Reference((Index(0),), "[0]")


# --- Resolving ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("process.inputs.x", 1),
        ("inputs.x", 1),
        ("inputs.nested.deep[1].k", "v"),
        ("steps.review-application.outputs.decision", "approve"),
        ("steps.2fa.outputs.ok", True),
        ("trigger.payload.a.b[0]", 10),
        ("trigger.payload.a.b[2]", None),
        ("env.COMPLIANCE_API_KEY", "secret"),
        ("instance.id", "inst-1"),
        ("loop.msg.id", 9),
        ("outputs.score", 0.3),
        ("score", "top-level score"),
        ("payload['odd key!']", 5),
        ("null_here", None),
        ("steps.source.outputs.messages[*].id", [1, 2]),
        ("steps.source.outputs.messages[*].tags", [["a"], []]),
        ("steps.source.outputs.messages[*].tags[*]", [["a"], []]),
        ("steps.source.outputs.messages[*].tags[0]", ["a"]),
        ("steps.source.outputs.grid[*][0]", [1, 3]),
        ("steps.source.outputs.empty[*]", []),
        ("steps.source.outputs.empty[*].x", []),
    ],
)
def test_resolve(text: str, expected: Any) -> None:
    assert resolve(parse_reference(text), CONTEXT) == expected


def test_star_returns_all_items() -> None:
    messages = CONTEXT["steps"]["source"]["outputs"]["messages"]
    assert resolve(parse_reference("steps.source.outputs.messages[*]"), CONTEXT) == messages


@pytest.mark.parametrize(
    "text",
    [
        "nowhere",
        "process.inputs.missing",
        "steps.unknown.outputs.x",
        "trigger.payload.a.b[3]",
        "trigger.payload.a[0]",
        "trigger.payload.a.b.first",
        "process.inputs.x.y",
        "process.inputs.x[0]",
        "text.upper",
        "text[0]",
        "text[*]",
        "null_here.x",
        "null_here[*]",
        "process[*]",
        "steps.review-application.__class__",
        "process.__dict__",
    ],
)
def test_paths_that_lead_nowhere_are_missing(text: str) -> None:
    assert resolve(parse_reference(text), CONTEXT) is MISSING


def test_inputs_alias_never_reads_a_top_level_inputs_key() -> None:
    assert resolve(parse_reference("inputs.x"), CONTEXT) == 1
    assert resolve(parse_reference("inputs.x"), {"inputs": {"x": 2}}) is MISSING


def test_bare_root() -> None:
    score = parse_reference("score")
    assert resolve(score, CONTEXT) == "top-level score"
    assert resolve(score, CONTEXT, bare_root=("outputs",)) == 0.3
    assert resolve(parse_reference("x"), CONTEXT, bare_root=("inputs",)) == 1
    known = parse_reference("instance.id")
    assert resolve(known, CONTEXT, bare_root=("outputs",)) == "inst-1"


def test_star_drops_items_where_the_rest_is_missing() -> None:
    context = {"items": [{"name": "a"}, {}, {"name": None}, "text", {"name": "b"}]}
    assert resolve(parse_reference("items[*].name"), context) == ["a", None, "b"]


class Sneaky:
    """An object whose attributes must never be read by resolve."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError("resolve read an attribute")

    def __getitem__(self, key: Any) -> Any:
        raise AssertionError("resolve indexed an arbitrary object")


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"a": Sneaky()},
        {"a": {"b": Sneaky()}},
        {"a": [Sneaky()]},
        {"a": "string"},
        {"a": 12},
        {"a": None},
        {"a": {1: "int key"}},
    ],
)
def test_resolve_never_raises_or_touches_arbitrary_objects(context: dict[str, Any]) -> None:
    for text in ("a.b.c", "a[0].b", "a[*].b", "a['x'][*][*]", "a.__class__"):
        resolve(parse_reference(text), context)


def test_resolve_accepts_a_read_only_mapping_at_the_top() -> None:
    context = MappingProxyType({"a": {"b": 1}})
    assert resolve(parse_reference("a.b"), context) == 1
    assert resolve(parse_reference("z"), context) is MISSING


def test_resolve_on_cyclic_data_is_bounded() -> None:
    loop: list[Any] = []
    loop.append(loop)
    text = "a" + "[*]" * (MAX_REFERENCE_SEGMENTS - 1)
    result = resolve(parse_reference(text), {"a": loop})
    assert isinstance(result, list)


def test_require_raises_unresolved_reference() -> None:
    assert require(parse_reference("inputs.x"), CONTEXT) == 1
    assert require(parse_reference("null_here"), CONTEXT) is None
    with pytest.raises(UnresolvedReference) as caught:
        require(parse_reference("steps.nope.outputs.x"), CONTEXT)
    assert caught.value.reference == "steps.nope.outputs.x"
    assert "steps.nope.outputs.x" in str(caught.value)


def test_missing_sentinel() -> None:
    assert repr(MISSING) == "MISSING"
    assert not MISSING
    assert MISSING is not None
    assert copy.deepcopy(MISSING) is MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
