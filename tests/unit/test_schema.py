"""The JSON Schema of the format: the shipped file matches the models, real files pass it,
obviously broken files fail it, and the loader agrees on both."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from tests.support.reference import REFERENCE_DIR

from opensop.definition.loader import load_definition
from opensop.definition.problems import DefinitionError
from opensop.definition.schema import SCHEMA_ID, packaged_schema_text, schema_text
from opensop.definition.source import load_source

REFERENCE_FILES = sorted(REFERENCE_DIR.glob("*.sop.yaml"))
# `opensop schema` prints the packaged file, so it cannot regenerate a stale one.
REGENERATE = (
    ".venv/bin/python -c 'from opensop.definition.schema import schema_text; "
    'print(schema_text(), end="")\' > src/opensop/definition/process.schema.json'
)

Document = dict[str, Any]
Mutation = Callable[[Document], object]  # changes the document in place


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(packaged_schema_text()))


def plain(path: Path) -> Document:
    """The file as an editor sees it: plain JSON data."""
    value: Document = json.loads(
        json.dumps(load_source(path.read_bytes(), filename=path.name).value)
    )
    return value


def loader_accepts(document: Document) -> bool:
    try:
        load_definition(json.dumps(document), filename="variant.sop.json")
    except DefinitionError:
        return False
    return True


# --- the shipped file -------------------------------------------------------------------


def test_packaged_schema_matches_the_models() -> None:
    assert packaged_schema_text() == schema_text(), (
        f"process.schema.json is stale: regenerate it with\n  {REGENERATE}"
    )


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(packaged_schema_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID


# --- real files and valid variants ----------------------------------------------------------


def test_reference_processes_are_there() -> None:
    assert len(REFERENCE_FILES) >= 12, REFERENCE_DIR


@pytest.mark.parametrize("path", REFERENCE_FILES, ids=lambda path: path.name)
def test_reference_process_validates(validator: Draft202012Validator, path: Path) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(plain(path))]
    assert errors == []


@pytest.mark.parametrize("path", REFERENCE_FILES, ids=lambda path: path.name)
def test_reference_process_in_flat_form_validates(
    validator: Draft202012Validator, path: Path
) -> None:
    document = plain(path)
    flat = {"opensop": document.get("opensop", "0.1"), **document["process"]}
    assert list(validator.iter_errors(flat)) == []
    assert loader_accepts(flat)


def _base() -> Document:
    """A small wrapped process with one step of each kind the mutations below need."""
    return {
        "opensop": "0.2",
        "process": {
            "name": "variants",
            "version": "1.0",
            "trigger": {"type": "api"},
            "inputs": [{"name": "email", "type": "string", "required": True}],
            "steps": [
                {
                    "id": "ask",
                    "type": "form",
                    "outputs": [{"name": "size", "type": "enum", "values": ["s", "m"]}],
                },
                {"id": "call", "type": "webhook", "webhook": {"url": "https://x.example"}},
                {
                    "id": "each",
                    "type": "loop",
                    "loop": {"while": "true"},
                    "body": [{"id": "inner", "type": "form"}],
                },
            ],
        },
    }


def _step(document: Document, index: int) -> Document:
    step: Document = document["process"]["steps"][index]
    return step


VALID_VARIANTS: dict[str, Mutation] = {
    "as-is": lambda d: None,
    "unquoted-version": lambda d: d["process"].update(version=1.1),
    "unquoted-format-version": lambda d: d.update(opensop=0.3),
    "no-format-version": lambda d: d.pop("opensop"),
    "map-form-step-inputs": lambda d: _step(d, 1).update(inputs={"who": "${inputs.email}"}),
    "schedule-trigger": lambda d: d["process"].update(
        trigger={"type": "schedule", "cron": "@daily"}
    ),
    "webhook-trigger": lambda d: d["process"].update(
        trigger={
            "type": "webhook",
            "auth": {"secret_env": "SECRET"},
            "input_mapping": {"email": "${payload.email}"},
        }
    ),
    "wait-step": lambda d: d["process"]["steps"].append(
        {"id": "w", "type": "wait", "wait": {"seconds": 5}}
    ),
    "llm-step": lambda d: d["process"]["steps"].append({"id": "l", "type": "llm", "prompt": "Hi"}),
}


@pytest.mark.parametrize("mutate", VALID_VARIANTS.values(), ids=VALID_VARIANTS.keys())
def test_valid_variant_passes_schema_and_loader(
    validator: Draft202012Validator, mutate: Mutation
) -> None:
    document = _base()
    mutate(document)
    assert list(validator.iter_errors(document)) == []
    assert loader_accepts(document)


def test_base_document_is_valid(validator: Draft202012Validator) -> None:
    assert validator.is_valid(_base()) and loader_accepts(_base())


# --- obviously broken documents --------------------------------------------------------------

INVALID_VARIANTS: dict[str, Mutation] = {
    "unknown-process-key": lambda d: d["process"].update(stepz=[]),
    "unknown-wrapper-key": lambda d: d.update(processs={}),
    "unknown-step-key": lambda d: _step(d, 0).update(conditon="true"),
    "unknown-webhook-key": lambda d: _step(d, 1)["webhook"].update(header={}),
    "step-without-id": lambda d: _step(d, 0).pop("id"),
    "step-without-type": lambda d: _step(d, 0).pop("type"),
    "unknown-step-type": lambda d: _step(d, 0).update(type="aproval"),
    "unknown-type-in-loop-body": lambda d: _step(d, 2)["body"][0].update(type="nope"),
    "steps-is-a-mapping": lambda d: d["process"].update(steps={"id": "a", "type": "form"}),
    "steps-is-empty": lambda d: d["process"].update(steps=[]),
    "webhook-without-url": lambda d: _step(d, 1)["webhook"].pop("url"),
    "webhook-without-block": lambda d: _step(d, 1).pop("webhook"),
    "field-type-typo": lambda d: _step(d, 0)["outputs"][0].update(type="enm"),
    "required-is-a-string": lambda d: d["process"]["inputs"][0].update(required="yes"),
    "name-not-a-slug": lambda d: d["process"].update(name="My Process"),
    "missing-name": lambda d: d["process"].pop("name"),
    "format-version-1.0": lambda d: d.update(opensop="1.0"),
    "unknown-trigger-type": lambda d: d["process"].update(trigger={"type": "cron"}),
    "process-is-a-list": lambda d: d.update(process=[]),
    "loop-without-body": lambda d: _step(d, 2).pop("body"),
}


@pytest.mark.parametrize("mutate", INVALID_VARIANTS.values(), ids=INVALID_VARIANTS.keys())
def test_broken_variant_fails_schema_and_loader(
    validator: Draft202012Validator, mutate: Mutation
) -> None:
    document = _base()
    mutate(document)
    assert not validator.is_valid(document)
    assert not loader_accepts(document)


def test_broken_flat_form_fails_schema() -> None:
    flat = copy.deepcopy(_base()["process"])
    flat["steps"][0]["type"] = "frm"
    validator = Draft202012Validator(json.loads(packaged_schema_text()))
    assert not validator.is_valid(flat)
    flat["steps"][0]["type"] = "form"
    assert validator.is_valid(flat)


# --- files the loader accepts but the schema refuses ---------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: _step(d, 0).update(timeout=30), id="numeric-timeout"),
        pytest.param(lambda d: _step(d, 1)["webhook"].update(method="post"), id="method"),
        pytest.param(
            lambda d: _step(d, 0)["outputs"][0].update(values=[1, 2]), id="numeric-values"
        ),
        pytest.param(
            lambda d: d["process"]["steps"].append(
                {"id": "sub", "type": "subprocess", "process": "child", "version": 2}
            ),
            id="numeric-subprocess-version",
        ),
    ],
)
def test_loader_valid_variant_passes_schema(
    validator: Draft202012Validator, mutate: Mutation
) -> None:
    document = _base()
    mutate(document)
    assert loader_accepts(document)
    assert list(validator.iter_errors(document)) == []
