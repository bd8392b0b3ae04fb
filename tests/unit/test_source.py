"""load_source: plain data and positions from untrusted bytes, within fixed bounds."""

from __future__ import annotations

import codecs
import json
import math
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.reference import REFERENCE_DIR

from opensop.definition import source
from opensop.definition.source import (
    DEFAULT_LIMITS,
    ProblemCode,
    SourceDocument,
    SourceError,
    SourceLimits,
    load_source,
)
from opensop.definition.text import SourceFloat, SourceInt, scalar_text

REFERENCE = REFERENCE_DIR
PROPERTIES = settings(deadline=None, max_examples=300)

LOADERS = ["pure"] + (["libyaml"] if yaml.__with_libyaml__ else [])


@pytest.fixture(params=LOADERS)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with libyaml and with the pure-Python parser: both must behave alike."""
    chosen = yaml.CSafeLoader if request.param == "libyaml" else yaml.SafeLoader
    monkeypatch.setattr(source, "YAML_LOADER", chosen)
    yield request.param


def problems_of(data: bytes | str, **kwargs: Any) -> list[tuple[str, int | None]]:
    with pytest.raises(SourceError) as caught:
        load_source(data, **kwargs)
    return [(p.code, p.line) for p in caught.value.problems]


def codes_of(data: bytes | str, **kwargs: Any) -> list[str]:
    return [code for code, _ in problems_of(data, **kwargs)]


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["a: &a [" + ", ".join(['"lol"'] * width) + "]"]
    names = "abcdefghijklmnopqrstuvwxyz"
    for level in range(1, levels):
        name, prev = names[level], names[level - 1]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * width) + "]")
    return "\n".join(lines) + "\n"


# --- the reference files -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(REFERENCE.glob("*.sop.yaml")), ids=lambda p: p.name.removesuffix(".sop.yaml")
)
def test_reference_processes_load(path: Path, loader: str) -> None:
    doc = load_source(path.read_bytes(), filename=path.name)
    process = doc.value.get("process", doc.value)
    assert isinstance(process["name"], str)
    assert isinstance(process["steps"], list) and process["steps"]
    line, column = doc.locate(("process", "steps", 0, "type")) or (0, 0)
    assert path.read_text().splitlines()[line - 1][column - 1 :].startswith("type")


def test_reference_directory_is_not_empty() -> None:
    assert len(list(REFERENCE.glob("*.sop.yaml"))) >= 10


# --- scalars: YAML 1.2 core schema, source text kept ------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("yes", "yes", str),
        ("no", "no", str),
        ("on", "on", str),
        ("off", "off", str),
        ("y", "y", str),
        ("n", "n", str),
        ("Yes", "Yes", str),
        ("true", True, bool),
        ("True", True, bool),
        ("TRUE", True, bool),
        ("false", False, bool),
        ("FALSE", False, bool),
        ("tRUE", "tRUE", str),
        ("~", None, type(None)),
        ("null", None, type(None)),
        ("NULL", None, type(None)),
        ("", None, type(None)),
        ("0x1F", 31, SourceInt),
        ("0o17", 15, SourceInt),
        ("0777", 777, SourceInt),  # decimal in 1.2, never octal 511
        ("-12", -12, SourceInt),
        ("+12", 12, SourceInt),
        ("1_000", "1_000", str),
        ("1:30", "1:30", str),
        ("0b101", "0b101", str),
        ("1e3", 1000.0, SourceFloat),
        (".5", 0.5, SourceFloat),
        ("-.inf", -math.inf, SourceFloat),
        (".Inf", math.inf, SourceFloat),
        ("2024-01-01", "2024-01-01", str),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z", str),
        ("'true'", "true", str),
        ('"123"', "123", str),
        ("!!str 12", "12", str),
        ("! 12", "12", str),
        ("!!int '12'", 12, SourceInt),
        ("!!float 3", 3.0, SourceFloat),
        ("!!bool true", True, bool),
        ("!!null ''", None, type(None)),
    ],
)
def test_scalar_resolution(text: str, expected: Any, kind: type, loader: str) -> None:
    value = load_source(f"v: {text}\n").value["v"]
    assert type(value) is kind
    assert value == expected


@pytest.mark.parametrize(("text", "value"), [("1.10", 1.1), ("1.0", 1.0), ("2", 2)])
def test_version_keeps_its_source_text(text: str, value: float, loader: str) -> None:
    version = load_source(f"process:\n  version: {text}\n").value["process"]["version"]
    assert isinstance(version, SourceInt | SourceFloat)
    assert version == value and version.source == text
    assert scalar_text(version) == text


def test_nan_stays_a_source_float(loader: str) -> None:
    value = load_source("v: .NaN\n").value["v"]
    assert isinstance(value, SourceFloat) and math.isnan(value) and value.source == ".NaN"


def test_block_scalars_and_quotes_are_strings(loader: str) -> None:
    doc = load_source("a: |\n  12\nb: >-\n  true\nc: '~'\n")
    assert doc.value == {"a": "12\n", "b": "true", "c": "~"}


@pytest.mark.parametrize(
    ("text", "key"),
    [("1", "1"), ("on", "on"), ("~", "~"), ("true", "true"), ("1.10", "1.10"), ("0x10", "0x10")],
)
def test_scalar_keys_become_their_source_text(text: str, key: str, loader: str) -> None:
    assert load_source(f"{text}: x\n").value == {key: "x"}


# --- tags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/name:os.system",
        "!!python/object:os.system {}",
        "!!python/object/new:os.system [x]",
        "!custom x",
        "!!binary aGk=",
        "!!set {a}",
        "!!omap [{a: 1}]",
        "!!timestamp 2024-01-01",
        "!!merge x",
        "!<tag:example.com,2000:x> 1",
    ],
)
def test_unsupported_tags_are_refused_and_named(tagged: str, loader: str) -> None:
    with pytest.raises(SourceError) as caught:
        load_source(f"a: 1\nb: {tagged}\n")
    [problem] = caught.value.problems
    assert problem.code == ProblemCode.UNSUPPORTED_TAG
    assert tagged.split()[0].strip("!<>").split(",")[0] in problem.message
    assert problem.line == 2


def test_python_object_apply_never_runs(tmp_path: Path, loader: str) -> None:
    target = tmp_path / "pwned"
    text = f"a: !!python/object/apply:os.system ['touch {target}']\n"
    assert codes_of(text) == ["unsupported_tag"]
    assert not target.exists()


@pytest.mark.parametrize("tagged", ["!!int abc", "!!bool yes", "!!null x", "!!float 1:30"])
def test_core_tag_on_wrong_text(tagged: str, loader: str) -> None:
    assert codes_of(f"a: {tagged}\n") == ["invalid_value"]


@pytest.mark.parametrize("tagged", ["!!str [a]", "!!seq {a: 1}", "!!map [a]", "!!int {a: 1}"])
def test_core_tag_on_wrong_kind(tagged: str, loader: str) -> None:
    assert codes_of(f"a: {tagged}\n") == ["unsupported_tag"]


# --- keys, anchors, aliases ------------------------------------------------------------------


def test_duplicate_key_names_both_lines(loader: str) -> None:
    with pytest.raises(SourceError) as caught:
        load_source("name: a\ntype: form\nname: b\n", filename="p.sop.yaml")
    [problem] = caught.value.problems
    assert (problem.code, problem.line, problem.column) == ("duplicate_key", 3, 1)
    assert "'name'" in problem.message and "line 1" in problem.message
    assert str(caught.value).startswith("p.sop.yaml:3:1: duplicate key")


def test_keys_that_read_alike_are_duplicates(loader: str) -> None:
    assert problems_of('1: a\n"1": b\n') == [("duplicate_key", 2)]


def test_complex_keys_are_refused(loader: str) -> None:
    assert problems_of("? [a, b]\n: 1\nc: 2\n") == [("invalid_key", 1)]
    assert codes_of("a: {[x]: 1}\n") == ["invalid_key"]
    assert codes_of("l: &l [1]\nm:\n  ? *l\n  : 1\n") == ["invalid_key"]
    assert load_source("k: &k name\nm: {*k : 1}\n").value["m"] == {"name": 1}


def test_merge_keys_are_refused_but_a_quoted_one_is_a_key(loader: str) -> None:
    assert codes_of("base: &b {x: 1}\nstep:\n  <<: *b\n  y: 2\n") == ["unsupported_merge_key"]
    assert load_source("'<<': 1\n").value == {"<<": 1}


def test_aliases_share_the_subtree_and_point_at_the_anchor(loader: str) -> None:
    doc = load_source("base: &b\n  retries: 3\nstep:\n  opts: *b\n")
    assert doc.value["step"]["opts"] is doc.value["base"]
    assert doc.locate(("step", "opts")) == (4, 3)
    assert doc.locate(("step", "opts", "retries")) == (2, 3)


def test_undefined_and_self_referencing_aliases(loader: str) -> None:
    assert codes_of("a: *nope\n") == ["undefined_alias"]
    assert codes_of("a: &x [*x]\n") == ["undefined_alias"]


def test_problems_are_capped() -> None:
    text = "".join("k: 1\n" for _ in range(100))
    codes = codes_of(text)
    assert len(codes) == DEFAULT_LIMITS.max_problems + 1
    assert codes[-1] == "too_many_problems"


# --- limits: nothing hangs, nothing grows unbounded ------------------------------------------


def test_billion_laughs_is_refused_quickly_and_cheaply(loader: str) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        assert codes_of(billion_laughs()) == ["too_many_nodes"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2
    assert peak < 20 * 1024 * 1024


def test_small_alias_use_is_fine(loader: str) -> None:
    doc = load_source(billion_laughs(levels=3, width=3))
    assert doc.value["c"][0][0] == ["lol", "lol", "lol"]


def test_aliases_of_a_big_string_count_its_size(loader: str) -> None:
    text = "big: &s " + "x" * 200_000 + "\ncopies: [" + ", ".join(["*s"] * 30) + "]\n"
    assert codes_of(text) == ["expansion_too_large"]


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 10_000 + "]" * 10_000,
        "a: " + "{b: " * 10_000 + "}" * 10_000,
        "a:\n" + "".join(" " * (2 * i) + "- \n" for i in range(1, 200)),
    ],
    ids=["flow-sequences", "flow-mappings", "block-sequences"],
)
def test_deep_nesting_is_refused_without_recursion(text: str, loader: str) -> None:
    assert codes_of(text) == ["too_deep"]


def test_depth_limit_is_exact() -> None:
    limits = SourceLimits(max_depth=3)
    assert load_source("a: {b: {c: 1}}", limits=limits).value == {"a": {"b": {"c": 1}}}
    assert codes_of("a: {b: {c: {d: 1}}}", limits=limits) == ["too_deep"]


def test_node_limit_counts_plain_documents_too() -> None:
    text = "a: [" + ", ".join(["1"] * 200) + "]\n"
    assert codes_of(text, limits=SourceLimits(max_nodes=100)) == ["too_many_nodes"]


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "str"])
def test_huge_input_is_refused_before_parsing(
    as_bytes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed a file that was too large")

    monkeypatch.setattr(yaml, "parse", no_parsing)
    data: bytes | str = b"a" * 50_000_000 if as_bytes else "a" * 50_000_000
    started = time.perf_counter()
    assert problems_of(data) == [("file_too_large", None)]
    assert time.perf_counter() - started < 1


def test_size_limit_is_in_utf8_bytes_for_str_input() -> None:
    limits = SourceLimits(max_bytes=100)
    assert codes_of("a: " + "é" * 60, limits=limits) == ["file_too_large"]


def test_a_huge_scalar_is_refused(loader: str) -> None:
    assert problems_of("a: 1\nb: " + "x" * 300_000 + "\n") == [("value_too_large", 2)]


def test_a_huge_number_is_refused_not_crashing_int(loader: str) -> None:
    # int() refuses more than 4300 digits with ValueError; it must not escape.
    assert codes_of("a: " + "9" * 5000) == ["value_too_large"]
    assert load_source("a: '" + "9" * 5000 + "'").value["a"] == "9" * 5000


# --- encodings and document shape ------------------------------------------------------------


@pytest.mark.parametrize(
    "codec",
    [codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE],
    ids=["utf-8-bom", "utf-16-le", "utf-16-be", "utf-32-le"],
)
def test_byte_order_marks_are_accepted(codec: bytes, loader: str) -> None:
    encoding = {
        codecs.BOM_UTF8: "utf-8",
        codecs.BOM_UTF16_LE: "utf-16-le",
        codecs.BOM_UTF16_BE: "utf-16-be",
        codecs.BOM_UTF32_LE: "utf-32-le",
    }[codec]
    data = codec + "name: café\nversion: 1.10\n".encode(encoding)
    doc = load_source(data)
    assert doc.value["name"] == "café"
    assert doc.locate(("version",)) == (2, 1)


def test_bom_in_str_input_is_stripped() -> None:
    assert load_source("\ufeffa: 1").value == {"a": 1}


def test_invalid_utf8_is_refused_with_position() -> None:
    assert problems_of(b"a: 1\nb: caf\xe9\n") == [("invalid_encoding", 2)]
    assert codes_of(codecs.BOM_UTF16_LE + b"a\x00:") == ["invalid_encoding"]  # odd length


def test_lone_surrogates_are_refused(loader: str) -> None:
    assert codes_of("a: \ud800\n") == ["invalid_encoding"]
    assert codes_of('a: "\\ud800"\n') in (["invalid_encoding"], ["syntax_error"])


@pytest.mark.parametrize("data", [b"a: \x00\n", b"a: b\x07\n", "a: \x1b[31m\n"])
def test_control_characters_are_syntax_errors(data: bytes | str, loader: str) -> None:
    assert problems_of(data) == [("syntax_error", 1)]


def test_multiple_documents_are_refused(loader: str) -> None:
    assert problems_of("a: 1\n---\nb: 2\n") == [("multiple_documents", 2)]
    assert codes_of("a: 1\n...\n---\nb: 2\n") == ["multiple_documents"]
    # PyYAML wants `---` after `...`; libyaml reads an implicit second document. Both refuse.
    assert codes_of("a: 1\n...\nb: 2\n")[0] in ("multiple_documents", "syntax_error")


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n", "---\n", b"\xef\xbb\xbf"])
def test_empty_documents(text: str | bytes, loader: str) -> None:
    assert codes_of(text) == ["empty_document"]


@pytest.mark.parametrize("text", ["hello", "42", "null", "- a\n- b\n", "[1, 2]", "*x"])
def test_top_level_must_be_a_mapping(text: str, loader: str) -> None:
    assert codes_of(text) == ["not_a_mapping"]


# --- syntax errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a:\n\tb: 1\n", 2, "tab"),
        ("a: 1\nb:\n  c: 1\n\td: 2\n", 4, "tab"),
        ("a: 'unclosed\nb: 2\n", 3, "unclosed quote"),
        ("a: b: c\n", 1, "':'"),
        ("a:\n  - 1\n - 2\n", 3, "indentation"),
        ("a: {b: 1\n", 2, "'}'"),
        ("a: [1, 2\n", 2, "']'"),
        ("a: @x\n", 1, "'@'"),
    ],
)
def test_syntax_errors_have_a_line_and_a_readable_message(
    text: str, line: int, words: str, loader: str
) -> None:
    with pytest.raises(SourceError) as caught:
        load_source(text)
    [problem] = caught.value.problems
    assert (problem.code, problem.line) == ("syntax_error", line)
    assert problem.column is not None
    assert words in problem.message


# --- locate ----------------------------------------------------------------------------------

LOCATED = """\
opensop: "0.1"
process:
  name: demo
  inputs:
    - { name: score, type: number }
    - name: note
      type: string
  steps:
    - id: first
      type: form
    -   id: second
        type: approval
"""


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ((), (1, 1)),
        (("opensop",), (1, 1)),
        (("process",), (2, 1)),
        (("process", "name"), (3, 3)),
        (("process", "inputs"), (4, 3)),
        (("process", "inputs", 0), (5, 7)),
        (("process", "inputs", 0, "type"), (5, 22)),
        (("process", "inputs", 1, "type"), (7, 7)),
        (("process", "steps", 1), (11, 9)),
        (("process", "steps", 1, "type"), (12, 9)),
        (("process", "steps", 9, "type"), (8, 3)),  # nearest known ancestor
        (("process", "name", "deeper"), (3, 3)),
        (("nope",), (1, 1)),
    ],
)
def test_locate(path: tuple[str | int, ...], position: tuple[int, int], loader: str) -> None:
    assert load_source(LOCATED).locate(path) == position


def test_error_messages_carry_file_line_and_column() -> None:
    with pytest.raises(SourceError) as caught:
        load_source("a: 1\nb: !!python/name:os.system\n", filename="demo.sop.yaml")
    assert str(caught.value).startswith("demo.sop.yaml:2:4: tag !!python/name:os.system")
    assert caught.value.problems[0].as_dict()["line"] == 2


# --- JSON ------------------------------------------------------------------------------------


def test_json_loads_with_positions() -> None:
    text = (
        '{\n  "process": {\n    "name": "demo",\n    "steps": [{"id": "a", "type": "form"}]\n  }\n}'
    )
    doc = load_source(text, filename="demo.sop.json")
    assert doc.format == "json"
    assert doc.value["process"]["steps"][0]["type"] == "form"
    assert doc.locate(("process",)) == (2, 3)
    assert doc.locate(("process", "steps", 0, "type")) == (4, 27)


def test_json_is_sniffed_for_strings_only_when_it_looks_like_json() -> None:
    assert load_source('{"a": 1}').format == "json"
    assert load_source("{a: 1}").format == "yaml"
    assert load_source('{"a": 1}', filename="x.sop.yaml").format == "yaml"


def test_json_duplicate_keys() -> None:
    with pytest.raises(SourceError) as caught:
        load_source('{\n"a": 1,\n"b": {"c": 1, "c": 2},\n"a": 3\n}', filename="p.json")
    found = [(p.code, p.line, p.column) for p in caught.value.problems]
    assert found == [("duplicate_key", 3, 15), ("duplicate_key", 4, 1)]
    assert "line 2" in caught.value.problems[1].message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_are_refused(constant: str) -> None:
    assert problems_of('{"a": [1, ' + constant + "]}", filename="p.json") == [("syntax_error", 1)]


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_json_deep_nesting_is_refused(opener: str) -> None:
    text = '{"a": ' + opener * 50_000 + "1"
    assert codes_of(text, filename="p.json") == ["too_deep"]


def test_json_syntax_error_has_line_and_column() -> None:
    with pytest.raises(SourceError) as caught:
        load_source('{\n  "a": 1,\n  "b": }\n', filename="p.json")
    [problem] = caught.value.problems
    assert (problem.code, problem.line, problem.column) == ("syntax_error", 3, 8)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[1, 2]", "not_a_mapping"),
        ("  ", "empty_document"),
        ('{"a": ' + "9" * 5000 + "}", "value_too_large"),
        ('{"a": "' + "x" * 300_000 + '"}', "value_too_large"),
        ('{"a": "\\ud800"}', "invalid_encoding"),
        ('{"a": "\x01"}', "syntax_error"),
        ('{"a": [' + "1," * 200_000 + "1]}", "too_many_nodes"),
        ('{"a": "' + '\\"' * 200_000, "syntax_error"),
    ],
    ids=["list", "empty", "long-number", "long-string", "surrogate", "control", "wide", "open"],
)
def test_json_refusals(text: str, code: str) -> None:
    assert codes_of(text, filename="p.json") == [code]


# --- properties: any input returns or raises SourceError, nothing else -------------------------

YAMLISH = [
    "a", "b", "k", ":", ": ", "- ", "-", "[", "]", "{", "}", ",", "&a ", "*a", "&b ", "*b",
    "!!str ", "!!python/name:os.system ", "!x ", "!", "? ", "|", ">", "'", '"', "#", "\n", "  ",
    "\t", "---", "...", "<<", "yes", "1.10", "0x1F", "~", "%YAML 1.2\n", "\\", "\x00", "é",
    "\ufeff", "\r\n",
]  # fmt: skip


def assert_returns_or_source_error(data: bytes | str, **kwargs: Any) -> None:
    try:
        doc = load_source(data, **kwargs)
    except SourceError as exc:
        assert exc.problems
        assert all(isinstance(p.code, str) and p.message for p in exc.problems)
        return
    assert isinstance(doc, SourceDocument) and isinstance(doc.value, dict)
    doc.locate(("a", 0, "b"))


@PROPERTIES
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    assert_returns_or_source_error(data)
    assert_returns_or_source_error(data, filename="x.json")


@PROPERTIES
@given(st.lists(st.sampled_from(YAMLISH), max_size=60).map("".join))
def test_random_yamlish_text(text: str) -> None:
    assert_returns_or_source_error(text)
    assert_returns_or_source_error(text, limits=SourceLimits(max_depth=3, max_nodes=12))


@PROPERTIES
@given(st.lists(st.sampled_from(YAMLISH), max_size=60).map("".join))
def test_random_yamlish_text_pure_parser(text: str) -> None:
    original = source.YAML_LOADER
    source.YAML_LOADER = yaml.SafeLoader
    try:
        assert_returns_or_source_error(text)
    finally:
        source.YAML_LOADER = original


JSONISH = [
    "{", "}", "[", "]", ",", ":", '"a"', '"b"', "1", "-0.5e3", "NaN", "true", "null", " ", '"',
]  # fmt: skip


@PROPERTIES
@given(st.lists(st.sampled_from(JSONISH), max_size=60).map("".join))
def test_random_jsonish_text(text: str) -> None:
    assert_returns_or_source_error(text, filename="x.json")
    assert_returns_or_source_error(text, filename="x.json", limits=SourceLimits(max_depth=2))


# Text YAML reads exactly as JSON does: no line breaks YAML folds, no raw control characters.
SAFE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff"),
    max_size=20,
)
JSON_DATA = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SAFE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SAFE_TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(deadline=None, max_examples=100)
@given(st.dictionaries(SAFE_TEXT, JSON_DATA, max_size=5))
def test_json_documents_read_the_same_as_json_and_as_yaml(data: dict[str, Any]) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=1)
    assert load_source(text, filename="x.json").value == data
    assert load_source(text, filename="x.yaml").value == data
