"""load_definition: real files load, and every broken shape gets a precise problem.

Shape rules (types, unknown and missing keys, step-type blocks, hostile input) are tested
here; cross-field rules (references, durations, limits) are in ``test_checks.py``.
Each problem is pinned by its stable ``code`` and its ``path`` in the file.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from pydantic import ValidationError
from tests.support.reference import REFERENCE_DIR

from opensop.definition.loader import Profile, load_definition
from opensop.definition.models import ProcessDefinition, WebhookStep
from opensop.definition.problems import DefinitionError, Problem
from opensop.definition.source import load_source

# name, version and number of top-level steps of every reference process.
REFERENCE_PROCESSES = {
    "agent-pr-review.sop.yaml": ("agent-pr-review", "1.0", 4),
    "appsignal-responder.sop.yaml": ("appsignal-responder", "1.0", 3),
    "customer-onboarding.sop.yaml": ("customer-onboarding", "1.0", 6),
    "expense-approval.sop.yaml": ("expense-approval", "1.0", 4),
    "lead-qualification.sop.yaml": ("lead-qualification", "1.0", 3),
    "maria-linkedin-post-approval.sop.yaml": ("maria-linkedin-post-approval", "1.0", 11),
    "morning-briefing.sop.yaml": ("morning-briefing", "1.0", 5),
    "release-deploy.sop.yaml": ("release-deploy", "1.0", 5),
    "subprocess-demo.sop.yaml": ("subprocess-demo", "1.0", 2),
    "support-ticket-triage.sop.yaml": ("support-ticket-triage", "1.0", 4),
    "v02-smoke-exit-when.sop.yaml": ("v02-smoke-exit-when", "1.0", 3),
    "v02-smoke-loop-llm.sop.yaml": ("v02-smoke-loop-llm", "1.0", 2),
}

# A wrapped file: one input `x` and a valid form step `first` (steps[0]). Tests append
# steps after it, so a broken step is never the only one (see the too_short xfail below).
HEAD = """\
opensop: "0.1"
process:
  name: demo
  version: "1"
  inputs:
    - {name: x, type: string}
  steps:
    - {id: first, type: form, outputs: [{name: o, type: string}]}
"""
BODY = "body: [{id: b, type: form}]"  # a valid loop body
MINIMAL_FLAT = 'name: demo\nversion: "1"\nsteps: [{id: a, type: form}]\n'


def wrapped(*steps: str) -> str:
    """HEAD plus ``steps`` (YAML list items written at column 0) as steps[1], steps[2] ..."""
    body = "".join(textwrap.dedent(step).strip("\n") + "\n" for step in steps)
    return HEAD + textwrap.indent(body, "    ")


def with_process(line: str) -> str:
    """HEAD with one more line in the process mapping (before `steps`)."""
    return HEAD.replace("  steps:", f"  {line}\n  steps:")


def with_trigger(trigger: str) -> str:
    return with_process(f"trigger: {trigger}")


def problems_of(
    text: str | bytes, *, filename: str = "demo.sop.yaml", profile: Profile = Profile.SERVER
) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(text, filename=filename, profile=profile)
    return caught.value.problems


def found(text: str | bytes, **options: Any) -> list[tuple[str, str]]:
    """(code, path) of every problem, in the order reported."""
    return [(p.code, p.path) for p in problems_of(text, **options)]


def load(text: str | bytes, *, filename: str = "demo.sop.yaml") -> ProcessDefinition:
    return load_definition(text, filename=filename)


# --- reference processes ---------------------------------------------------------------


def test_every_reference_process_is_listed() -> None:
    on_disk = {path.name for path in REFERENCE_DIR.glob("*.sop.*")}
    assert on_disk == set(REFERENCE_PROCESSES), f"update REFERENCE_PROCESSES ({REFERENCE_DIR})"


@pytest.mark.parametrize(("filename", "expected"), sorted(REFERENCE_PROCESSES.items()))
def test_reference_process_loads(filename: str, expected: tuple[str, str, int]) -> None:
    definition = load((REFERENCE_DIR / filename).read_bytes(), filename=filename)
    assert (definition.name, definition.version, len(definition.steps)) == expected
    assert type(definition.version) is str  # not a number, not a YAML source-text subclass


@pytest.mark.parametrize("filename", sorted(REFERENCE_PROCESSES))
def test_reference_process_as_json_loads_to_the_same_definition(filename: str) -> None:
    raw = (REFERENCE_DIR / filename).read_bytes()
    as_json = json.dumps(load_source(raw, filename=filename).value)
    from_json = load(as_json, filename=filename.replace(".yaml", ".json"))
    assert from_json.to_json() == load(raw, filename=filename).to_json()


# --- wrapped and flat forms, format versions, YAML surprises -------------------------------


def test_flat_and_wrapped_forms_give_the_same_definition() -> None:
    wrapped_text = 'opensop: "0.1"\nprocess:\n' + textwrap.indent(MINIMAL_FLAT, "  ")
    assert load(MINIMAL_FLAT).to_json() == load(wrapped_text).to_json()


def test_flat_form_may_declare_the_format_version() -> None:
    assert load('opensop: "0.3"\n' + MINIMAL_FLAT).opensop == "0.3"


def test_format_version_defaults_to_0_1() -> None:
    assert load(MINIMAL_FLAT).opensop == "0.1"


FLAT_DOCUMENT = {"name": "demo", "version": "1", "steps": [{"id": "a", "type": "form"}]}


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"opensop": "0.1", "process": FLAT_DOCUMENT}, id="wrapped"),
        pytest.param(FLAT_DOCUMENT, id="flat"),
    ],
)
def test_sop_json_file_loads(document: dict[str, Any]) -> None:
    definition = load(json.dumps(document, indent=2), filename="demo.sop.json")
    assert (definition.name, definition.version, definition.steps[0].id) == ("demo", "1", "a")


def test_sop_json_file_problems_have_positions() -> None:
    steps = [{"id": "a", "type": "form"}, {"id": "b", "type": "form", "timout": "1h"}]
    text = json.dumps({"name": "demo", "version": "1", "steps": steps}, indent=2)
    (problem,) = problems_of(text, filename="demo.sop.json")
    assert (problem.code, problem.path) == ("unknown_key", "steps[1].timout")
    assert (problem.line, problem.column) == (12, 7)


@pytest.mark.parametrize("version", ['"0.1"', '"0.2"', '"0.4"', '"0.7"', "0.2", "0.5"])
def test_supported_format_versions(version: str) -> None:
    assert load(f"opensop: {version}\n" + MINIMAL_FLAT).opensop == version.strip('"')


@pytest.mark.parametrize(
    "version", ['"0.9"', '"1.0"', "1.0", '"0.10"', "0.10", '"v0.1"', '""', "~", "[0.1]", "2"]
)
def test_unsupported_format_version_is_refused(version: str) -> None:
    text = f"opensop: {version}\nprocess:\n" + textwrap.indent(MINIMAL_FLAT, "  ")
    (problem,) = problems_of(text)
    assert (problem.code, problem.path, problem.line) == (
        "unsupported_format_version",
        "opensop",
        1,
    )
    assert "0.1" in problem.message and "0.7" in problem.message


@pytest.mark.parametrize(
    ("written", "kept"),
    [("1.10", "1.10"), ("1.0", "1.0"), ("2", "2"), ('"1.10"', "1.10"), ("007", "007")],
)
def test_unquoted_version_keeps_its_source_text(written: str, kept: str) -> None:
    version = load(MINIMAL_FLAT.replace('"1"', written)).version
    assert version == kept and type(version) is str


def test_json_number_version_keeps_its_source_text() -> None:
    text = '{"name": "demo", "version": 1.10, "steps": [{"id": "a", "type": "form"}]}'
    assert load(text, filename="demo.sop.json").version == "1.10"


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", '"true"', "1"])
def test_yaml_1_1_booleans_are_not_booleans(word: str) -> None:
    text = HEAD.replace("{name: x, type: string}", f"{{name: x, required: {word}}}")
    assert found(text) == [("wrong_type", "process.inputs[0].required")]


def test_yaml_1_1_boolean_words_stay_strings_in_enum_values() -> None:
    values = "[yes, no, on, off, 1.10]"
    text = HEAD.replace("{name: x, type: string}", f"{{name: x, type: enum, values: {values}}}")
    assert load(text).inputs[0].values == ("yes", "no", "on", "off", "1.10")


def test_recipe_metadata_is_accepted() -> None:
    assert load(MINIMAL_FLAT + "recipe: {source: gh, tags: [a]}\n").recipe is not None


@pytest.mark.parametrize(
    ("text", "code", "path"),
    [
        pytest.param("- a\n- b\n", "not_a_mapping", "", id="list"),
        pytest.param("just text\n", "not_a_mapping", "", id="scalar"),
        pytest.param('opensop: "0.1"\nprocess: [1]\n', "wrong_type", "process", id="process-list"),
        pytest.param('opensop: "0.1"\nprocess: x\n', "wrong_type", "process", id="process-text"),
        pytest.param(
            MINIMAL_FLAT.replace("[{id: a, type: form}]", "{id: a}"),
            "wrong_type",
            "steps",
            id="steps-mapping",
        ),
        pytest.param(
            MINIMAL_FLAT.replace("[{id: a, type: form}]", "[]"),
            "invalid_length",
            "steps",
            id="steps-empty",
        ),
        pytest.param(
            MINIMAL_FLAT.replace('"1"', '""'), "invalid_length", "version", id="version-empty"
        ),
        pytest.param(
            MINIMAL_FLAT.replace("demo", "My Process"), "invalid_name", "name", id="name-pattern"
        ),
        pytest.param(
            MINIMAL_FLAT.replace("demo", "a" * 129), "invalid_length", "name", id="name-too-long"
        ),
        pytest.param(MINIMAL_FLAT + "tags: x\n", "wrong_type", "tags", id="tags-text"),
        pytest.param(MINIMAL_FLAT + "owner: [a]\n", "wrong_type", "owner", id="owner-list"),
    ],
)
def test_wrong_top_level_shape(text: str, code: str, path: str) -> None:
    assert found(text) == [(code, path)]


# --- missing and unknown keys -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param('version: "1"\nsteps: [{id: a, type: form}]\n', "name", id="name"),
        pytest.param("name: demo\nsteps: [{id: a, type: form}]\n", "version", id="version"),
        pytest.param('name: demo\nversion: "1"\n', "steps", id="steps"),
        pytest.param(wrapped("- {type: form}"), "process.steps[1].id", id="step-id"),
        pytest.param(wrapped("- {id: a}"), "process.steps[1].type", id="step-type"),
        pytest.param(
            wrapped("- {id: a, type: form, outputs: [{type: string}]}"),
            "process.steps[1].outputs[0].name",
            id="field-name",
        ),
        pytest.param(
            wrapped("- {id: a, type: webhook}"), "process.steps[1].webhook", id="webhook-block"
        ),
        pytest.param(
            wrapped("- {id: a, type: webhook, webhook: {method: POST}}"),
            "process.steps[1].webhook.url",
            id="webhook-url",
        ),
        pytest.param(wrapped("- {id: a, type: wait}"), "process.steps[1].wait", id="wait-block"),
        pytest.param(
            wrapped("- {id: a, type: loop, body: [{id: b, type: form}]}"),
            "process.steps[1].loop",
            id="loop-block",
        ),
        pytest.param(
            wrapped("- {id: a, type: subprocess}"), "process.steps[1].process", id="subprocess"
        ),
        pytest.param(with_trigger("{cron: '@daily'}"), "process.trigger.type", id="trigger-type"),
        pytest.param(with_trigger("{type: schedule}"), "process.trigger.cron", id="cron"),
        pytest.param(with_trigger("{type: webhook}"), "process.trigger.auth", id="webhook-auth"),
        pytest.param(with_trigger("{type: interval}"), "process.trigger.interval", id="interval"),
        pytest.param(
            with_trigger("{type: webhook, auth: {}}"),
            "process.trigger.auth.secret_env",
            id="auth-secret-env",
        ),
    ],
)
def test_missing_key(text: str, path: str) -> None:
    (problem,) = problems_of(text)
    assert (problem.code, problem.path) == ("missing_key", path)
    assert problem.message == f"missing required key '{path.rsplit('.', 1)[-1]}'"


def test_missing_run_of_a_shell_step() -> None:
    text = wrapped("- {id: a, type: shell}")
    assert found(text, profile=Profile.LOCAL) == [("missing_key", "process.steps[1].run")]


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        pytest.param(MINIMAL_FLAT + "descripton: x\n", "descripton", "description", id="flat"),
        pytest.param(with_process("stepz: []"), "process.stepz", "steps", id="wrapped"),
        pytest.param("processs: {}\n" + HEAD, "processs", "process", id="wrapper"),
        pytest.param(
            wrapped("- {id: a, type: form, conditon: 'true'}"),
            "process.steps[1].conditon",
            "condition",
            id="step-form",
        ),
        pytest.param(
            wrapped("- {id: a, type: automated, rnu: x.sh}"),
            "process.steps[1].rnu",
            "run",
            id="step-automated",
        ),
        pytest.param(
            wrapped("- {id: a, type: llm, prompt: hi, modle: m}"),
            "process.steps[1].modle",
            "model",
            id="step-llm",
        ),
        pytest.param(
            wrapped("- {id: a, type: judgment, judgement: {}}"),
            "process.steps[1].judgement",
            "judgment",
            id="step-judgment",
        ),
        pytest.param(
            wrapped("- {id: a, type: form, outputs: [{name: o, tpye: string}]}"),
            "process.steps[1].outputs[0].tpye",
            "type",
            id="output-field",
        ),
        pytest.param(
            HEAD.replace("{name: x, type: string}", "{name: x, requird: true}"),
            "process.inputs[0].requird",
            "required",
            id="input-field",
        ),
        pytest.param(
            wrapped("- {id: a, type: webhook, webhook: {url: 'https://x', header: {}}}"),
            "process.steps[1].webhook.header",
            "headers",
            id="webhook-headers",
        ),
        pytest.param(
            wrapped("- {id: a, type: webhook, webhook: {url: 'https://x', response: sync}}"),
            "process.steps[1].webhook.response",
            "response_mode",
            id="webhook-response-mode",
        ),
        pytest.param(
            wrapped("- {id: a, type: judgment, judgment: {allow_agnet: true}}"),
            "process.steps[1].judgment.allow_agnet",
            "allow_agent",
            id="judgment-block",
        ),
        pytest.param(
            wrapped("- {id: a, type: automated, retry: {max: 1, backof: fixed}}"),
            "process.steps[1].retry.backof",
            "backoff",
            id="retry",
        ),
        pytest.param(
            wrapped(f"- {{id: a, type: loop, loop: {{while: 'true', max_iteration: 3}}, {BODY}}}"),
            "process.steps[1].loop.max_iteration",
            "max_iterations",
            id="loop-block",
        ),
        pytest.param(
            wrapped("- {id: a, type: wait, wait: {second: 3}}"),
            "process.steps[1].wait.second",
            "seconds",
            id="wait-block",
        ),
        pytest.param(
            with_trigger("{type: schedule, cron: '@daily', timezon: UTC}"),
            "process.trigger.timezon",
            "timezone",
            id="trigger",
        ),
        pytest.param(
            with_trigger("{type: webhook, auth: {secret_env: S, heder: X}}"),
            "process.trigger.auth.heder",
            "header",
            id="trigger-auth",
        ),
    ],
)
def test_unknown_key_suggests_the_close_one(text: str, path: str, suggestion: str) -> None:
    problems = problems_of(text)
    assert [(p.code, p.path) for p in problems] == [("unknown_key", path)]
    assert problems[0].message == f"unknown key '{path.rsplit('.', 1)[-1]}'; did you mean " + (
        f"'{suggestion}'?"
    )


def test_unknown_key_far_from_any_lists_the_allowed_keys() -> None:
    (problem,) = problems_of(with_process("xyzzy: me"))
    assert (problem.code, problem.path) == ("unknown_key", "process.xyzzy")
    assert "expected one of:" in problem.message and "steps" in problem.message


def test_opensop_inside_process_is_refused() -> None:
    text = HEAD.replace("  name: demo", '  opensop: "0.1"\n  name: demo')
    assert found(text) == [("unknown_key", "process.opensop")]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("aproval", "unknown type 'aproval'; did you mean 'approval'?"),
        ("webhok", "unknown type 'webhok'; did you mean 'webhook'?"),
        ("Form", "unknown type 'Form'; did you mean 'form'?"),
        (
            "script",
            "unknown type 'script'; expected one of: form, approval, judgment, automated, "
            "llm, webhook, subprocess, notification, wait, loop, shell, noop",
        ),
    ],
)
def test_unknown_step_type_suggests_a_known_one(written: str, message: str) -> None:
    (problem,) = problems_of(wrapped(f"- {{id: a, type: {written}}}"))
    assert (problem.code, problem.path) == ("unknown_step_type", "process.steps[1].type")
    assert problem.message == message


def test_unknown_trigger_type() -> None:
    (problem,) = problems_of(with_trigger("{type: cronjob}"))
    assert (problem.code, problem.path) == ("invalid_value", "process.trigger.type")
    assert "api, manual, webhook, schedule, interval" in problem.message


# --- step types: each block valid, and broken ------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        pytest.param(
            "- {id: s, type: form, timeout: 7d, outputs: [{name: tax_id, required: true}]}",
            id="form",
        ),
        pytest.param(
            "- {id: s, type: form, fields: [{name: note, label: Note}], assignee: ops}",
            id="form-fields",
        ),
        pytest.param("- {id: s, type: approval, approvers: [cfo, ceo]}", id="approval"),
        pytest.param(
            "- {id: s, type: judgment, judgment: {allow_agent: true, confidence_threshold: 0.9, "
            "escalate_to: ops, model: m, prompt: 'Decide {{ case }}'}}",
            id="judgment",
        ),
        pytest.param(
            "- {id: s, type: automated, run: scripts/check.sh, outputs: [{name: ok}]}",
            id="automated-run",
        ),
        pytest.param(
            "- {id: s, type: automated, outputs: [{name: hi, value: 'Hello, ${inputs.x}!'}]}",
            id="automated-value",
        ),
        pytest.param(
            "- {id: s, type: automated, executor: external, validation: strict}",
            id="automated-worker",
        ),
        pytest.param(
            "- {id: s, type: llm, model: m, prompt: 'Sum up {{ text }}', max_retries: 3, "
            "expected_output_schema: {summary: string}, temperature: 0.2}",
            id="llm-prompt",
        ),
        pytest.param("- {id: s, type: llm, prompt_file: prompts/a.md}", id="llm-prompt-file"),
        pytest.param(
            "- {id: s, type: webhook, webhook: {method: post, url: 'https://a.example/v1', "
            "headers: {X-Id: '${inputs.x}'}, body: {id: '${steps.first.outputs.o}'}}}",
            id="webhook-sync",
        ),
        pytest.param(
            "- {id: s, type: webhook, webhook: {url: 'https://a.example', response_mode: "
            "callback}}",
            id="webhook-callback",
        ),
        pytest.param(
            "- {id: s, type: subprocess, process: lead-qualification, version: 2.10}",
            id="subprocess",
        ),
        pytest.param(
            "- {id: s, type: notification, channel: email, to: [a@example.com], subject: Hi, "
            "body: 'Done: {{ result }}'}",
            id="notification-email",
        ),
        pytest.param(
            "- {id: s, type: notification, channel: log, template: Done}", id="notification-log"
        ),
        pytest.param("- {id: s, type: wait, wait: {seconds: 30}}", id="wait-seconds"),
        pytest.param("- {id: s, type: wait, wait: {seconds: 1.5}}", id="wait-float"),
        pytest.param("- {id: s, type: wait, wait: {until: 'inputs.x == \"go\"'}}", id="wait-until"),
        pytest.param("- {id: s, type: wait, wait: {until_time: '${inputs.x}'}}", id="until-time"),
        pytest.param(
            "- {id: s, type: loop, loop: {while: 'true', max_iterations: 3}, body: "
            "[{id: b, type: form}]}",
            id="loop-while",
        ),
        pytest.param(
            "- {id: s, type: loop, loop: {repeat_until: 'inputs.x == \"done\"', aggregate: "
            "{all: collect}}, body: [{id: b, type: form}]}",
            id="loop-repeat-until",
        ),
    ],
)
def test_valid_step_block(step: str) -> None:
    assert load(wrapped(step)).steps[1].id == "s"


def test_webhook_method_is_normalized_to_upper_case() -> None:
    step = "- {id: s, type: webhook, webhook: {method: patch, url: 'https://x.example'}}"
    webhook_step = load(wrapped(step)).steps[1]
    assert isinstance(webhook_step, WebhookStep)
    assert webhook_step.webhook.method == "PATCH"


def test_step_inputs_map_form_is_normalized() -> None:
    step = "- {id: s, type: automated, inputs: {who: '${inputs.x}'}}"
    (step_input,) = load(wrapped(step)).steps[1].inputs
    assert (step_input.name, step_input.value) == ("who", "${inputs.x}")


@pytest.mark.parametrize(
    ("step", "code", "path"),
    [
        pytest.param("{type: form, outputs: {name: o}}", "wrong_type", "outputs", id="outputs"),
        pytest.param(
            "{type: form, outputs: [{name: 'my field'}]}",
            "invalid_name",
            "outputs[0].name",
            id="field-name",
        ),
        pytest.param(
            "{type: form, outputs: [{name: o, type: strng}]}",
            "invalid_value",
            "outputs[0].type",
            id="field-type",
        ),
        pytest.param(
            "{type: form, outputs: [{name: o, format: mail}]}",
            "invalid_value",
            "outputs[0].format",
            id="field-format",
        ),
        pytest.param("{type: approval, approvers: {a: 1}}", "wrong_type", "approvers", id="apr"),
        pytest.param(
            "{type: judgment, judgment: {confidence_threshold: 1.5}}",
            "out_of_range",
            "judgment.confidence_threshold",
            id="judgment-threshold",
        ),
        pytest.param(
            "{type: judgment, judgment: {allow_agent: 'yes'}}",
            "wrong_type",
            "judgment.allow_agent",
            id="judgment-allow-agent",
        ),
        pytest.param(
            "{type: automated, validation: strcit}", "invalid_value", "validation", id="validation"
        ),
        pytest.param("{type: automated, run: [a.sh]}", "wrong_type", "run", id="automated-run"),
        pytest.param("{type: llm, model: m}", "invalid_value", "", id="llm-without-prompt"),
        pytest.param(
            "{type: llm, prompt: hi, max_retries: 11}", "out_of_range", "max_retries", id="llm"
        ),
        pytest.param(
            "{type: webhook, webhook: {url: 'https://x', response_mode: async}}",
            "invalid_value",
            "webhook.response_mode",
            id="webhook-response-mode",
        ),
        pytest.param(
            "{type: webhook, webhook: {url: 'https://x', method: FETCH}}",
            "invalid_value",
            "webhook.method",
            id="webhook-method",
        ),
        pytest.param(
            "{type: webhook, webhook: {url: 'https://x', headers: [a]}}",
            "wrong_type",
            "webhook.headers",
            id="webhook-headers",
        ),
        pytest.param(
            "{type: subprocess, process: Lead Qualification}",
            "invalid_name",
            "process",
            id="subprocess-name",
        ),
        pytest.param("{type: notification, channel: sms}", "invalid_value", "channel", id="chan"),
        pytest.param(
            "{type: wait, wait: {seconds: 30, until: 'true'}}", "invalid_value", "wait", id="wait2"
        ),
        pytest.param("{type: wait, wait: {}}", "invalid_value", "wait", id="wait-none"),
        pytest.param(
            "{type: wait, wait: {seconds: -1}}", "out_of_range", "wait.seconds", id="wait-negative"
        ),
        pytest.param(
            "{type: wait, wait: {seconds: '30'}}", "wrong_type", "wait.seconds", id="wait-string"
        ),
        pytest.param(
            "{type: wait, wait: {seconds: true}}", "wrong_type", "wait.seconds", id="wait-boolean"
        ),
        pytest.param(
            f"{{type: loop, loop: {{for_each: 'inputs.x[*]', while: 'true'}}, {BODY}}}",
            "invalid_value",
            "loop",
            id="loop-two-modes",
        ),
        pytest.param(
            f"{{type: loop, loop: {{as: item}}, {BODY}}}", "invalid_value", "loop", id="loop-none"
        ),
        pytest.param(
            f"{{type: loop, loop: {{while: 'true', max_iterations: 0}}, {BODY}}}",
            "out_of_range",
            "loop.max_iterations",
            id="loop-max-iterations",
        ),
        pytest.param(
            f"{{type: loop, loop: {{while: 'true', aggregate: {{r: concatenate}}}}, {BODY}}}",
            "invalid_value",
            "loop.aggregate.r",
            id="loop-aggregate",
        ),
        pytest.param(
            f"{{type: loop, loop: {{while: 'true', as: Item}}, {BODY}}}",
            "invalid_name",
            "loop.as",
            id="loop-as",
        ),
        pytest.param(
            "{type: form, continue_on_error: 'true'}",
            "wrong_type",
            "continue_on_error",
            id="continue-on-error",
        ),
        pytest.param(
            "{type: form, timeout: 1h, on_timeout: skipp}",
            "invalid_value",
            "on_timeout",
            id="on-timeout",
        ),
        pytest.param("{type: automated, retry: {max: -1}}", "out_of_range", "retry.max", id="rm"),
        pytest.param(
            "{type: automated, retry: {backoff: linear}}",
            "invalid_value",
            "retry.backoff",
            id="retry-backoff",
        ),
        pytest.param("{type: form, executor: robot}", "invalid_value", "executor", id="executor"),
    ],
)
def test_broken_step_block(step: str, code: str, path: str) -> None:
    text = wrapped("- {id: s, " + step.removeprefix("{"))
    assert found(text) == [(code, f"process.steps[1].{path}".rstrip("."))]


@pytest.mark.parametrize("step_id", ["S1", "-a", "a b", "ä"])
def test_step_id_must_be_a_slug(step_id: str) -> None:
    text = wrapped(f"- {{id: '{step_id}', type: form}}")
    assert found(text) == [("invalid_name", "process.steps[1].id")]


def test_broken_step_messages_read_well() -> None:
    text = wrapped(
        "- {id: a, type: llm, model: m}",
        "- {id: b, type: wait, wait: {}}",
        "- {id: c, type: notification, channel: emial}",
    )
    assert {p.path: p.message for p in problems_of(text)} == {
        "process.steps[1]": "an llm step needs `prompt` or `prompt_file`",
        "process.steps[2].wait": "wait takes exactly one of `seconds`, `until` or `until_time`",
        "process.steps[3].channel": "'emial' is not allowed; did you mean 'email'?",
    }


def test_a_single_broken_step_is_one_problem() -> None:
    text = MINIMAL_FLAT.replace("type: form", "type: llm")
    assert found(text) == [("invalid_value", "steps[0]")]


@pytest.mark.parametrize(
    ("step", "code", "path"),
    [
        pytest.param(
            "{type: webhook, webhook: {url: 'https://x'}, retyr: 1}",
            "unknown_key",
            "retyr",
            id="webhook-step-key",
        ),
        pytest.param(
            "{type: wait, wait: {seconds: 1}, name: [1]}", "wrong_type", "name", id="wait-name"
        ),
        pytest.param(
            "{type: judgment, judgment: {}, continue_on_error: 1}",
            "wrong_type",
            "continue_on_error",
            id="judgment-flag",
        ),
        pytest.param(
            "{type: loop, loop: {while: 'true'}}", "missing_key", "body", id="loop-missing-body"
        ),
        pytest.param(
            "{type: loop, loop: {while: 'true'}, body: [{id: ok, type: form}, {id: b, type: frm}]}",
            "unknown_step_type",
            "body[1].type",
            id="loop-body-type",
        ),
        pytest.param(
            "{type: loop, loop: {while: 'true'}, body: [{id: ok, type: form}, {id: b, "
            "type: form, conditon: x}]}",
            "unknown_key",
            "body[1].conditon",
            id="loop-body-key",
        ),
        pytest.param(
            "{type: loop, loop: {while: 'true'}, body: [{id: ok, type: form}, {type: form}]}",
            "missing_key",
            "body[1].id",
            id="loop-body-id",
        ),
    ],
)
def test_problem_in_a_step_with_a_same_named_block(step: str, code: str, path: str) -> None:
    text = wrapped("- {id: s, " + step.removeprefix("{"))
    assert found(text) == [(code, f"process.steps[1].{path}")]


@pytest.mark.parametrize(
    "step",
    [
        pytest.param("{type: judgment, judgment: {confidence_threshold: true}}", id="threshold"),
        pytest.param("{type: llm, prompt: hi, temperature: true}", id="temperature"),
    ],
)
def test_boolean_is_not_a_number(step: str) -> None:
    text = wrapped("- {id: s, " + step.removeprefix("{"))
    assert [code for code, _ in found(text)] == ["wrong_type"]


def test_secret_env_pattern_message_describes_its_own_rule() -> None:
    (problem,) = problems_of(with_trigger("{type: webhook, auth: {secret_env: a-b}}"))
    assert problem.path == "process.trigger.auth.secret_env"
    assert "'-'" not in problem.message


# --- positions, order, rendering ----------------------------------------------------------

POSITIONED = """\
opensop: "0.1"
process:
  name: demo
  version: "1"
  steps:
    - id: start
      type: form
    - id: ask
      type: form
      outputs:
        - name: amount
          type: nmber
    - id: call
      type: webhook
      webhook:
        url: https://x.example
        response_mode: later
"""


def test_problems_carry_line_and_column_of_the_key() -> None:
    assert [(p.code, p.path, p.line, p.column) for p in problems_of(POSITIONED)] == [
        ("invalid_value", "process.steps[1].outputs[0].type", 12, 11),
        ("invalid_value", "process.steps[2].webhook.response_mode", 17, 9),
    ]


def test_problem_renders_like_a_compiler_message() -> None:
    assert problems_of(POSITIONED)[0].render("demo.sop.yaml") == (
        "demo.sop.yaml:12:11: process.steps[1].outputs[0].type: "
        "'nmber' is not allowed; did you mean 'number'?"
    )


def test_source_problem_renders_without_a_path() -> None:
    (problem,) = problems_of("name: demo\nname: again\n")
    assert problem.render("x.sop.yaml").startswith("x.sop.yaml:2:1: ")


@pytest.mark.parametrize(
    ("second_step", "path"),
    [("  - {id: b}\n", "steps[1].type"), ("  - id: b\n    type: wait\n", "steps[1].wait")],
)
def test_missing_key_points_at_the_enclosing_mapping(second_step: str, path: str) -> None:
    text = 'name: demo\nversion: "1"\nsteps:\n  - {id: a, type: form}\n' + second_step
    (problem,) = problems_of(text)
    assert (problem.path, problem.line, problem.column) == (path, 5, 5)


def test_every_shape_problem_is_reported_sorted_by_line() -> None:
    text = wrapped(
        "- {id: c, type: form, conditon: 'true'}",
        "- {id: a, type: wait, wait: {}}",
        "- {id: b, type: nope}",
    ).replace('  version: "1"', '  version: "1"\n  ownerr: me')
    problems = problems_of(text)
    assert [(p.code, p.path) for p in problems] == [
        ("unknown_key", "process.ownerr"),
        ("unknown_key", "process.steps[1].conditon"),
        ("invalid_value", "process.steps[2].wait"),
        ("unknown_step_type", "process.steps[3].type"),
    ]
    lines = [p.line or 0 for p in problems]
    assert lines == sorted(lines)


def test_definition_error_message_summarizes() -> None:
    with pytest.raises(DefinitionError, match=r"\(and 1 more\)$"):
        load(wrapped("- {id: a, type: wait, wait: {}}", "- {id: b, type: nope}"))


# --- hostile input ------------------------------------------------------------------------


def _alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


_BIG = MINIMAL_FLAT + 'description: "' + "x" * (2 * 1024 * 1024) + '"\n'
_DEEP = "[" * 10_000 + "]" * 10_000


@pytest.mark.parametrize(
    ("data", "filename", "code"),
    [
        pytest.param(_alias_bomb(), "a.sop.yaml", "too_many_nodes", id="alias-bomb"),
        pytest.param("a: " + _DEEP, "a.sop.yaml", "too_deep", id="deep-yaml"),
        pytest.param('{"a": ' + _DEEP + "}", "a.sop.json", "too_deep", id="deep-json"),
        pytest.param(
            "name: !!python/object/apply:os.system ['echo pwned']\n",
            "a.sop.yaml",
            "unsupported_tag",
            id="python-object",
        ),
        pytest.param(
            "name: !!python/name:os.system ''\n", "a.sop.yaml", "unsupported_tag", id="python-name"
        ),
        pytest.param(_BIG, "a.sop.yaml", "file_too_large", id="two-megabytes"),
        pytest.param(_BIG.encode(), "a.sop.yaml", "file_too_large", id="two-megabytes-bytes"),
        pytest.param(MINIMAL_FLAT + "\tx: 1\n", "a.sop.yaml", "syntax_error", id="tab-indent"),
        pytest.param("name: demo\n\ufeffversion: 1\n", "a.sop.yaml", "syntax_error", id="mid-bom"),
        pytest.param(MINIMAL_FLAT + "name: again\n", "a.sop.yaml", "duplicate_key", id="dup-key"),
        pytest.param('{"name": "a", "name": "b"}', "a.sop.json", "duplicate_key", id="dup-json"),
        pytest.param(
            MINIMAL_FLAT.replace("{id: a,", "{id: a, id: b,"),
            "a.sop.yaml",
            "duplicate_key",
            id="dup-step-key",
        ),
        pytest.param(
            "base: &b {type: form}\nsteps: [{<<: *b, id: a}]\n",
            "a.sop.yaml",
            "unsupported_merge_key",
            id="merge-key",
        ),
        pytest.param(
            "name: caf\xe9\n".encode("latin-1"), "a.sop.yaml", "invalid_encoding", id="latin-1"
        ),
        pytest.param("name: demo\x00\n", "a.sop.yaml", "syntax_error", id="nul-byte"),
        pytest.param("", "a.sop.yaml", "empty_document", id="empty"),
        pytest.param("a: 1\n---\na: 2\n", "a.sop.yaml", "multiple_documents", id="two-documents"),
        pytest.param('{"name": NaN}', "a.sop.json", "syntax_error", id="json-nan"),
        pytest.param(
            "version: " + "9" * 5000 + "\n", "a.sop.yaml", "value_too_large", id="huge-integer"
        ),
    ],
)
def test_hostile_input_is_a_definition_error(data: str | bytes, filename: str, code: str) -> None:
    problems = problems_of(data, filename=filename)
    assert (problems[0].code, problems[0].path) == (code, "")


def test_leading_byte_order_mark_is_accepted() -> None:
    assert load(b"\xef\xbb\xbf" + MINIMAL_FLAT.encode()).name == "demo"


def test_utf16_with_byte_order_mark_is_accepted() -> None:
    assert load(MINIMAL_FLAT.encode("utf-16")).name == "demo"


def test_deeply_nested_prompt_is_a_definition_error() -> None:
    step = "- {id: s, type: llm, prompt: '{{ " + "(" * 5000 + " }}'}"
    assert found(wrapped(step)) == [("invalid_template", "process.steps[1].prompt")]


# --- immutability -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded() -> ProcessDefinition:
    step = (
        "- {id: s, type: webhook, exit_when: 'true', exit_outputs: {r: 1}, "
        "webhook: {url: 'https://x.example', headers: {A: b}}}"
    )
    return load(wrapped(step))


@pytest.mark.parametrize(
    ("target", "attribute"),
    [
        pytest.param(lambda d: d, "name", id="process-name"),
        pytest.param(lambda d: d, "steps", id="process-steps"),
        pytest.param(lambda d: d.steps[1], "id", id="step-id"),
        pytest.param(lambda d: d.steps[1].webhook, "url", id="webhook-url"),
        pytest.param(lambda d: d.inputs[0], "required", id="field"),
        pytest.param(lambda d: d.trigger, "type", id="trigger"),
    ],
)
def test_loaded_definition_is_frozen(
    loaded: ProcessDefinition, target: Any, attribute: str
) -> None:
    with pytest.raises(ValidationError, match="frozen"):
        setattr(target(loaded), attribute, "changed")


def test_loaded_lists_are_tuples(loaded: ProcessDefinition) -> None:
    assert isinstance(loaded.steps, tuple)
    assert isinstance(loaded.steps[0].outputs, tuple)
    assert isinstance(loaded.inputs, tuple)


def test_loaded_mappings_cannot_be_changed_in_place(loaded: ProcessDefinition) -> None:
    webhook_step = loaded.steps[1]
    assert isinstance(webhook_step, WebhookStep)
    with pytest.raises(TypeError):
        webhook_step.webhook.headers["A"] = "changed"
