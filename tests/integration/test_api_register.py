"""Registering process versions, discovery (`GET /sop/`) and `/schema`."""

from __future__ import annotations

import json
import textwrap

import httpx
import pytest
from tests.support.api import (
    assert_error,
    form,
    instance,
    one_form_process,
    process,
    register,
    start,
    step_states,
    submitted,
    unique,
)


def yaml_process(
    name: str,
    version: str = '"1.0"',
    step_type: str = "form",
    extra_step: str = "",
    fmt: str = '"0.1"',
) -> bytes:
    return (
        textwrap.dedent(f"""\
        opensop: {fmt}
        process:
          name: {name}
          version: {version}
          description: A small test process
          owner: qa-team
          tags: [test, yaml]
          inputs:
            - {{name: who, type: string, required: true}}
          steps:
            - id: greet
              type: {step_type}
              outputs:
                - {{name: greeting, type: string, required: true}}
        """).encode()
        + textwrap.indent(textwrap.dedent(extra_step), "    ").encode()
    )


def upload(client: httpx.Client, data: bytes, filename: str = "p.sop.yaml") -> httpx.Response:
    return client.post("/sop/processes/register", files={"file": (filename, data)})


def test_multipart_upload_is_idempotent_and_versions_are_immutable(client: httpx.Client) -> None:
    name = unique("multipart")
    data = yaml_process(name)

    first = upload(client, data)
    assert first.status_code == 201, first.text
    assert first.json()["name"] == name
    assert first.json()["version"] == "1.0"

    again = upload(client, data)
    assert again.status_code == 200, again.text
    assert again.json()["name"] == name and again.json()["version"] == "1.0"

    changed = upload(client, data.replace(b"A small test process", b"Something else"))
    assert_error(changed, 409, "version_conflict")
    assert client.get(f"/sop/{name}/schema").json()["description"] == "A small test process"


def test_raw_yaml_body_registers(client: httpx.Client) -> None:
    name = unique("raw-yaml")
    response = client.post(
        "/sop/processes/register",
        content=yaml_process(name),
        headers={"Content-Type": "application/yaml"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


def test_raw_json_body_registers(client: httpx.Client) -> None:
    name = unique("raw-json")
    document = one_form_process(name)
    response = client.post(
        "/sop/processes/register",
        content=json.dumps(document),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["version"]) == (name, "1.0")


def test_the_flat_form_registers(client: httpx.Client) -> None:
    name = unique("flat")
    flat = {"name": name, "version": "2.5", "steps": [form("only")]}

    response = client.post("/sop/processes/register", json=flat)

    assert response.status_code == 201, response.text
    assert response.json()["version"] == "2.5"


def test_an_unquoted_version_keeps_its_source_text(client: httpx.Client) -> None:
    name = unique("unquoted")
    response = upload(client, yaml_process(name, version="1.10"))

    assert response.status_code == 201, response.text
    assert response.json()["version"] == "1.10"
    assert client.get(f"/sop/{name}/schema").json()["version"] == "1.10"


@pytest.mark.parametrize(
    "data",
    [
        b"opensop: '0.1'\nprocess: [\n",
        b"opensop: '0.1'\nprocess:\n  name: x\n   bad-indent: 1\n",
        b"\x00\x01 not yaml at all: [",
    ],
    ids=["unclosed-flow", "bad-indent", "binary"],
)
def test_malformed_yaml_is_422_with_located_details(client: httpx.Client, data: bytes) -> None:
    body = assert_error(upload(client, data), 422, "invalid_definition")

    assert body["details"], body
    for item in body["details"]:
        assert isinstance(item["path"], str)
        assert isinstance(item["code"], str) and item["code"]
        assert isinstance(item["message"], str) and item["message"]


def test_malformed_json_is_422(client: httpx.Client) -> None:
    response = client.post(
        "/sop/processes/register",
        content=b'{"name": "x", "steps": [',
        headers={"Content-Type": "application/json"},
    )

    body = assert_error(response, 422, "invalid_definition")
    assert body["details"]


def test_a_definition_breaking_the_format_names_each_problem(client: httpx.Client) -> None:
    document = {
        "opensop": "0.1",
        "process": {
            "name": "Not A Valid Name",
            "version": "1.0",
            "steps": [
                {"id": "a", "type": "form", "outputs": [{"name": "x", "type": "strnig"}]},
                {"id": "b", "type": "teleport"},
            ],
        },
    }

    body = assert_error(
        client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    paths = [item["path"] for item in body["details"]]
    assert any(path.startswith("process.name") for path in paths), paths
    assert any(path.startswith("process.steps[0].outputs[0]") for path in paths), paths
    assert any(path.startswith("process.steps[1]") for path in paths), paths
    for item in body["details"]:
        assert {"path", "code", "message"} <= set(item)


def test_a_duplicate_step_id_is_refused(client: httpx.Client) -> None:
    document = process(unique("twice"), [form("same"), form("same")])

    body = assert_error(
        client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    assert "same" in body["message"]
    assert any(item["path"].startswith("process.steps[1]") for item in body["details"])


def test_a_reference_to_an_unknown_step_is_refused(client: httpx.Client) -> None:
    document = process(
        unique("dangling"),
        [form("a")],
        outputs=[{"name": "x", "type": "string", "from": "steps.nowhere.outputs.x"}],
    )

    body = assert_error(
        client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    assert "nowhere" in json.dumps(body)


def test_an_unknown_key_under_process_is_refused_by_name(client: httpx.Client) -> None:
    document = one_form_process(unique("typo"))
    document["process"]["stpes"] = []

    body = assert_error(
        client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    assert "stpes" in body["message"] or any("stpes" in json.dumps(d) for d in body["details"])


UNSUPPORTED_STEPS = {
    "loop": (
        {
            "id": "each",
            "type": "loop",
            "loop": {"repeat_until": "loop.item == 1", "max_iterations": 3},
            "body": [form("inner")],
        },
        "loop steps",
    ),
    "webhook": (
        {"id": "call", "type": "webhook", "webhook": {"url": "https://example.com/hook"}},
        "webhook steps",
    ),
    "notification": (
        {"id": "tell", "type": "notification", "channel": "log", "body": "hello"},
        "notification steps",
    ),
}


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED_STEPS))
def test_an_unsupported_step_type_is_refused_with_a_clear_message(
    client: httpx.Client, kind: str
) -> None:
    name = unique(kind)
    step, reason = UNSUPPORTED_STEPS[kind]
    document = process(name, [form("first"), step])

    body = assert_error(
        client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    assert reason in body["message"]
    assert step["id"] in body["message"]
    [item] = body["details"]
    assert item["path"] == "process.steps[1].type"
    assert item["code"] == "unsupported_step_type"
    assert_error(client.get(f"/sop/{name}/schema"), 404, "not_found")


def test_a_script_step_is_refused_without_a_process_directory(client: httpx.Client) -> None:
    # The shared servers have neither --load for this file nor OPENSOP_PROCESS_DIR.
    name = unique("scripted")
    step = {"id": "score", "type": "automated", "run": "steps/score.py"}
    document = process(name, [form("first"), step])

    body = assert_error(
        client.post("/sop/processes/register", json=document), 422, "invalid_definition"
    )

    [item] = body["details"]
    assert item["path"] == "process.steps[1].run"
    assert item["message"].startswith("score: ")
    assert "process directory" in item["message"]
    assert_error(client.get(f"/sop/{name}/schema"), 404, "not_found")


def test_wait_steps_and_timeouts_are_accepted_now(client: httpx.Client) -> None:
    name = unique("waits")
    document = process(
        name,
        [
            form("first", timeout="1h", on_timeout="escalate"),
            {"id": "pause", "type": "wait", "wait": {"seconds": 5}},
        ],
    )

    register(client, document)

    steps = client.get(f"/sop/{name}/schema").json()["steps"]
    assert [step["type"] for step in steps] == ["form", "wait"]


def test_an_unknown_format_major_version_is_refused(client: httpx.Client) -> None:
    name = unique("future")
    body = assert_error(upload(client, yaml_process(name, fmt='"9.0"')), 422, "invalid_definition")

    assert "9.0" in body["message"]
    assert_error(client.get(f"/sop/{name}/schema"), 404, "not_found")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"", "application/yaml"), (b"", "application/json"), (b"", None), (b"  \n", "text/yaml")],
    ids=["yaml", "json", "no-type", "blank"],
)
def test_an_empty_body_is_422(
    client: httpx.Client, content: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/sop/processes/register", content=content, headers=headers)

    assert_error(response, 422, "invalid_definition")


def test_an_empty_uploaded_file_is_422(client: httpx.Client) -> None:
    assert_error(upload(client, b""), 422, "invalid_definition")


def test_a_multipart_body_without_a_file_field_is_422(client: httpx.Client) -> None:
    response = client.post("/sop/processes/register", files={"other": ("p.yaml", b"x: 1")})

    assert_error(response, 422, "invalid_definition")


def test_a_new_version_becomes_latest(client: httpx.Client) -> None:
    name = unique("versions")
    register(client, one_form_process(name, description="first"))
    old = start(client, name)
    register(
        client, process(name, [form("review"), form("sign")], version="2.0", description="second")
    )

    [row] = [row for row in client.get("/sop/").json() if row["name"] == name]
    assert (row["version"], row["description"]) == ("2.0", "second")
    latest = client.get(f"/sop/{name}/schema").json()
    assert (latest["version"], latest["description"]) == ("2.0", "second")
    assert [step["id"] for step in latest["steps"]] == ["review", "sign"]
    first = client.get(f"/sop/{name}/schema", params={"version": "1.0"}).json()
    assert (first["version"], first["description"]) == ("1.0", "first")
    assert_error(client.get(f"/sop/{name}/schema", params={"version": "3.0"}), 404, "not_found")

    # New instances start on 2.0; the running one stays on 1.0 and still completes.
    new = start(client, name)
    assert new["version"] == "2.0"
    assert list(step_states(new)) == ["review", "sign"]
    assert instance(client, name, old["id"])["version"] == "1.0"
    done = submitted(client, name, old["id"], "fill", {"note": "ok"})
    assert done["instance"]["state"] == "completed"


def test_schema_is_the_full_parsed_definition(client: httpx.Client) -> None:
    name = unique("schema")
    upload(client, yaml_process(name))

    response = client.get(f"/sop/{name}/schema")

    assert response.status_code == 200
    body = response.json()
    assert body["opensop"] == "0.1"
    assert (body["name"], body["version"]) == (name, "1.0")
    assert body["description"] == "A small test process"
    assert body["inputs"][0]["name"] == "who" and body["inputs"][0]["required"] is True
    assert "outputs" in body
    assert body["steps"][0]["id"] == "greet" and body["steps"][0]["type"] == "form"


def test_schema_of_an_unknown_process_is_404(client: httpx.Client) -> None:
    assert_error(client.get(f"/sop/{unique('nobody')}/schema"), 404, "not_found")


def test_discovery_lists_the_documented_fields(client: httpx.Client) -> None:
    name = unique("discover")
    upload(client, yaml_process(name))

    response = client.get("/sop/")

    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list)
    [row] = [row for row in rows if row["name"] == name]
    assert {
        "name",
        "version",
        "description",
        "owner",
        "tags",
        "trigger",
        "inputs_summary",
        "schema_url",
    } <= set(row)
    assert row["version"] == "1.0"
    assert row["description"] == "A small test process"
    assert row["owner"] == "qa-team"
    assert row["tags"] == ["test", "yaml"]
    assert row["trigger"] == "api"
    assert row["inputs_summary"] == [{"name": "who", "type": "string", "required": True}]
    assert row["schema_url"] == f"/sop/{name}/schema"
    assert client.get(row["schema_url"]).status_code == 200
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names)), "one row per process (latest version only)"
    assert "customer-onboarding" in names  # loaded by `serve --load examples`


def test_a_rejected_registration_publishes_nothing(client: httpx.Client) -> None:
    name = unique("rejected")
    before = client.get("/sop/").json()

    upload(client, yaml_process(name, step_type="llm"))
    upload(client, yaml_process(name, fmt='"9.0"'))

    assert name not in [row["name"] for row in client.get("/sop/").json()]
    assert len(client.get("/sop/").json()) >= len(before)


@pytest.mark.parametrize("fmt", ['"0.2"', '"0.7"', "0.1"])
def test_every_0_x_format_version_is_accepted(client: httpx.Client, fmt: str) -> None:
    response = upload(client, yaml_process(unique("fmt"), fmt=fmt))

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("fmt", ['"1.0"', '"2"', "nope"])
def test_another_major_format_version_is_refused(client: httpx.Client, fmt: str) -> None:
    assert_error(upload(client, yaml_process(unique("fmt"), fmt=fmt)), 422, "invalid_definition")


def test_yaml_yes_and_no_stay_strings(client: httpx.Client) -> None:
    name = unique("norway")
    data = textwrap.dedent(f"""\
        opensop: "0.1"
        process:
          name: {name}
          version: "1.0"
          inputs:
            - {{name: answer, type: enum, values: [yes, no, on, off], required: true}}
            - {{name: country, type: enum, values: [NO, SE]}}
          steps:
            - {{id: a, type: form}}
        """).encode()
    assert upload(client, data).status_code == 201

    inputs = client.get(f"/sop/{name}/schema").json()["inputs"]
    started = client.post(f"/sop/{name}/start", json={"inputs": {"answer": "no", "country": "NO"}})

    assert inputs[0]["values"] == ["yes", "no", "on", "off"]
    assert inputs[1]["values"] == ["NO", "SE"]
    assert started.status_code == 201, started.text
    assert_error(
        client.post(f"/sop/{name}/start", json={"inputs": {"answer": False}}),
        422,
        "invalid_inputs",
    )
