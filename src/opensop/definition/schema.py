"""The JSON Schema of the process format, generated from the same models the loader uses.

Editors use it to autocomplete and check `.sop.yaml` files. It describes shapes only;
cross-field rules (references, step order) need `opensop validate`.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from opensop.definition.models import ProcessDefinition

SCHEMA_ID = "https://opensop.dev/schema/process.schema.json"
SCHEMA_FILE = "process.schema.json"
_VERSION_PATTERN = r"^0\.[1-7]$"


def build_schema() -> dict[str, Any]:
    process = ProcessDefinition.model_json_schema(by_alias=True, mode="validation")
    definitions = process.pop("$defs", {})
    process_props = process["properties"]
    # YAML authors often leave versions unquoted; the loader keeps their source text.
    process_props["version"] = {
        "title": "Version",
        "anyOf": [{"type": "string", "minLength": 1, "maxLength": 64}, {"type": "number"}],
    }
    format_version = {
        "title": "OpenSOP format version",
        "anyOf": [{"type": "string", "pattern": _VERSION_PATTERN}, {"type": "number"}],
    }
    process_props.pop("opensop", None)
    definitions["Process"] = process
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "OpenSOP process definition",
        "description": "A process file in the wrapped form (opensop + process) or the flat form.",
        "oneOf": [
            {
                "title": "Wrapped form",
                "type": "object",
                "properties": {
                    "opensop": format_version,
                    "process": {"$ref": "#/$defs/Process"},
                },
                "required": ["process"],
                "additionalProperties": False,
            },
            {
                "title": "Flat form",
                "allOf": [{"$ref": "#/$defs/Process"}],
                "not": {"required": ["process"]},
            },
        ],
        "$defs": definitions,
    }


def flat_form_schema_with_opensop(schema: dict[str, Any]) -> None:
    """The flat form may carry `opensop` too: allow it on the shared Process object."""
    schema["$defs"]["Process"]["properties"]["opensop"] = schema["oneOf"][0]["properties"][
        "opensop"
    ]


def generated_schema() -> dict[str, Any]:
    schema = build_schema()
    flat_form_schema_with_opensop(schema)
    return schema


def schema_text() -> str:
    return json.dumps(generated_schema(), indent=2, sort_keys=True) + "\n"


def packaged_schema_text() -> str:
    """The schema file shipped in the package (a test keeps it equal to the models)."""
    return resources.files("opensop.definition").joinpath(SCHEMA_FILE).read_text("utf-8")
