"""Templates: ``${...}`` interpolation, typed single references, escapes, errors."""

from __future__ import annotations

from typing import Any

import pytest

from opensop.definition.expressions import (
    ExpressionError,
    Reference,
    UnresolvedReference,
    as_text,
    parse_reference,
    parse_template,
)

CONTEXT: dict[str, Any] = {
    "process": {"inputs": {"who": "Ada", "amount": 12.5, "count": 3, "ok": True}},
    "steps": {"quote": {"outputs": {"items": [1, "a", None], "meta": {"k": "v", "n": 1}}}},
    "env": {"COMPLIANCE_PROVIDER_URL": "https://c.example", "COMPLIANCE_API_KEY": "k3y"},
    "callback_url": "https://engine/cb/1",
    "nothing": None,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${process.inputs.who}", "Ada"),
        ("${inputs.amount}", 12.5),
        ("${inputs.count}", 3),
        ("${inputs.ok}", True),
        ("${nothing}", None),
        ("${steps.quote.outputs.items}", [1, "a", None]),
        ("${steps.quote.outputs.meta}", {"k": "v", "n": 1}),
        ("${ inputs.who }", "Ada"),
    ],
)
def test_a_single_reference_keeps_its_type(text: str, expected: Any) -> None:
    template = parse_template(text)
    assert template.is_single_reference
    result = template.render(CONTEXT)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, ${inputs.who}!", "Hello, Ada!"),
        ("${inputs.who}${inputs.who}", "AdaAda"),
        (" ${inputs.who}", " Ada"),
        ("Total: $${inputs.amount}", "Total: $12.5"),
        ("n=${inputs.count}", "n=3"),
        ("ok=${inputs.ok}", "ok=true"),
        ("none=${nothing}", "none=null"),
        ("items=${steps.quote.outputs.items}", 'items=[1,"a",null]'),
        ("meta=${steps.quote.outputs.meta}", 'meta={"k":"v","n":1}'),
        ("reply to ${callback_url}", "reply to https://engine/cb/1"),
        ("${env.COMPLIANCE_PROVIDER_URL}/entities", "https://c.example/entities"),
    ],
)
def test_text_around_references_interpolates_as_text(text: str, expected: str) -> None:
    template = parse_template(text)
    assert not template.is_single_reference
    assert template.render(CONTEXT) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-1.5, "-1.5"),
        ([], "[]"),
        ({"é": [1, {"a": None}]}, '{"é":[1,{"a":null}]}'),
        ((1, 2), "[1,2]"),
    ],
)
def test_as_text(value: Any, expected: str) -> None:
    assert as_text(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("plain text", "plain text"),
        ("costs $5 and {braces}", "costs $5 and {braces}"),
        ("\\${not.a.reference}", "${not.a.reference}"),
        ("a \\${x} b ${inputs.who}", "a ${x} b Ada"),
        ("C:\\path\\to", "C:\\path\\to"),
        ("$$ and $", "$$ and $"),
    ],
)
def test_constant_text_and_escapes(text: str, expected: str) -> None:
    assert parse_template(text).render(CONTEXT) == expected


def test_constant_template() -> None:
    template = parse_template("no references here \\${x}")
    assert template.is_constant
    assert template.references() == ()
    assert template.render({}) == "no references here ${x}"


def test_references_in_order_each_once() -> None:
    template = parse_template("${a.b} ${steps.x.outputs.y[*].z} ${a.b} ${c}")
    assert [ref.text for ref in template.references()] == ["a.b", "steps.x.outputs.y[*].z", "c"]
    assert not template.is_constant


@pytest.mark.parametrize(
    "text", ["${steps.nope.outputs.x}", "Hello ${inputs.missing}!", "${a} ${inputs.who}"]
)
def test_unresolved_reference_raises(text: str) -> None:
    with pytest.raises(UnresolvedReference) as caught:
        parse_template(text).render(CONTEXT)
    assert caught.value.reference in text


def test_bare_root_when_rendering() -> None:
    template = parse_template("Bearer ${COMPLIANCE_API_KEY}")
    assert template.render(CONTEXT, bare_root=("env",)) == "Bearer k3y"
    with pytest.raises(UnresolvedReference):
        template.render(CONTEXT)


def test_map_references_rewrites_upper_case_bare_names_to_env() -> None:
    template = parse_template("${COMPLIANCE_PROVIDER_URL}/x?cb=${callback_url}&l=\\${lit}")

    def env_for_upper_case(ref: Reference) -> Reference:
        return ref.with_root(("env",)) if ref.is_bare and ref.root.isupper() else ref

    rewritten = template.map_references(env_for_upper_case)
    assert rewritten.references() == (
        parse_reference("env.COMPLIANCE_PROVIDER_URL"),
        parse_reference("callback_url"),
    )
    assert rewritten.render(CONTEXT) == "https://c.example/x?cb=https://engine/cb/1&l=${lit}"
    assert parse_template(rewritten.text).parts == rewritten.parts


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("${", 0, "never closed"),
        ("Hello ${inputs.who", 6, "never closed"),
        ("${}", 2, "is empty"),
        ("${   }", 5, "is empty"),
        ("${ a b }", 5, "only a reference may go inside"),
        ("${a == 1}", 4, "only a reference may go inside"),
        ("${1abc}", 2, "starts with a letter"),
        ("${a.}", 4, "expected a field name"),
        ("${a[x]}", 4, "expected a number, '*' or a quoted key"),
        ("ok ${a} then ${", 13, "never closed"),
    ],
)
def test_template_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template(text)
    assert caught.value.position == position
    assert fragment in caught.value.message


def test_quoted_key_with_a_brace_inside_a_template() -> None:
    template = parse_template("v=${payload['a}b']}")
    assert template.render({"payload": {"a}b": 1}}) == "v=1"
