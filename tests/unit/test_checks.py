"""Cross-field checks, through load_definition: references, order, env, triggers, limits.

Every case is a whole (shape-valid) file, and every problem is pinned by its ``code`` and
its ``path``, so a check that fires at the wrong place fails as surely as a missing one.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from opensop.definition.checks import MAX_FIELDS, MAX_LOOP_DEPTH, MAX_STEPS
from opensop.definition.loader import Profile, load_definition
from opensop.definition.models import ProcessDefinition
from opensop.definition.problems import DefinitionError, Problem

# Inputs `amount` and `email`; steps[0] is `intake`, a form with outputs `approved`, `items`.
HEAD = """\
opensop: "0.1"
process:
  name: demo
  version: "1"
  inputs:
    - {name: amount, type: number}
    - {name: email, type: string}
  steps:
    - id: intake
      type: form
      outputs: [{name: approved, type: boolean}, {name: items, type: "object[]"}]
"""


def wrapped(*steps: str, process: str = "") -> str:
    """HEAD with ``process`` lines before `steps`, then ``steps`` as steps[1], steps[2] ..."""
    head = (
        HEAD.replace("  steps:", textwrap.indent(process, "  ") + "  steps:") if process else HEAD
    )
    body = "".join(textwrap.dedent(step).strip("\n") + "\n" for step in steps)
    return head + textwrap.indent(body, "    ")


def load(text: str, *, profile: Profile = Profile.SERVER) -> ProcessDefinition:
    return load_definition(text, filename="demo.sop.yaml", profile=profile)


def problems_of(text: str, *, profile: Profile = Profile.SERVER) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        load(text, profile=profile)
    return caught.value.problems


def found(text: str, **options: Any) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in problems_of(text, **options)]


def _step(body: str) -> str:
    """A step with id `s` from a flow mapping without the id: ``{type: form, ...}``."""
    return "- {id: s, " + body.removeprefix("{")


def loop(body: str, *, mode: str = "while: 'true'", step_id: str = "each") -> str:
    return f"- {{id: {step_id}, type: loop, loop: {{{mode}}}, body: [{body}]}}"


# --- references that resolve -------------------------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(
            ["- {id: s, type: form, condition: 'steps.intake.outputs.approved'}"],
            id="condition-step",
        ),
        pytest.param(
            ["- {id: s, type: form, condition: 'process.inputs.amount > 10 and inputs.email'}"],
            id="condition-inputs",
        ),
        pytest.param(
            ["- {id: s, type: form, condition: 'trigger.payload.a[0] == 1 || instance.id'}"],
            id="condition-trigger-instance",
        ),
        pytest.param(
            ["- {id: s, type: form, condition: \"'x' in steps.intake.outputs.items[*].kind\"}"],
            id="condition-pluck",
        ),
        pytest.param(
            [
                "- {id: check-it, type: form, outputs: [{name: ok}]}",
                "- {id: s, type: form, condition: 'steps.check-it.outputs.ok == true'}",
            ],
            id="hyphenated-id",
        ),
        pytest.param(
            ["- {id: s, type: automated, inputs: [{name: v, from: steps.intake.outputs.items}]}"],
            id="inputs-from-step",
        ),
        pytest.param(
            ["- {id: s, type: automated, inputs: [{name: v, from: process.inputs.amount}]}"],
            id="inputs-from-process",
        ),
        pytest.param(
            ["- {id: s, type: automated, inputs: {who: 'Dear ${inputs.email}', n: 3}}"],
            id="inputs-map-template",
        ),
        pytest.param(
            [_step("{type: automated, outputs: [{name: g, value: 'Hi ${process.inputs.email}'}]}")],
            id="output-value-template",
        ),
        pytest.param(
            [
                "- {id: s, type: automated, outputs: [{name: score}], exit_when: 'score < 1', "
                "exit_outputs: {why: 'low ${outputs.score}'}}"
            ],
            id="exit-when-bare-name",
        ),
        pytest.param(
            [
                "- {id: s, type: automated, outputs: [{name: score}], "
                "exit_when: 'outputs.score < 1 or steps.intake.outputs.approved == false'}"
            ],
            id="exit-when-outputs-and-steps",
        ),
        pytest.param(
            ["- {id: s, type: approval, exit_when: 'approved == false && notes != null'}"],
            id="exit-when-approval-implicit",
        ),
        pytest.param(
            [
                "- {id: s, type: approval}",
                "- {id: t, type: form, condition: 'steps.s.outputs.approved'}",
            ],
            id="approval-outputs",
        ),
        pytest.param(
            [
                "- {id: s, type: subprocess, process: child}",
                "- {id: t, type: form, condition: 'steps.s.outputs.anything == 1'}",
            ],
            id="subprocess-outputs-unknown-until-run",
        ),
        pytest.param(
            [
                "- {id: s, type: form, outputs: [{name: kind}, "
                "{name: why, required_if: \"kind == 'other'\"}]}"
            ],
            id="required-if-sibling",
        ),
        pytest.param(
            ["- {id: s, type: wait, wait: {until: 'steps.intake.outputs.approved'}}"],
            id="wait-until",
        ),
        pytest.param(
            [
                loop(
                    "{id: b, type: automated, inputs: [{name: v, from: loop.it}]}",
                    mode="for_each: 'steps.intake.outputs.items[*]', as: it",
                )
            ],
            id="loop-variable-in-body",
        ),
        pytest.param(
            [loop("{id: b, type: form, condition: 'loop.item.n > 1 and inputs.amount'}")],
            id="loop-default-variable",
        ),
        pytest.param(
            [
                loop(
                    "{id: b, type: form, outputs: [{name: ok}]}, "
                    "{id: c, type: form, condition: 'steps.b.outputs.ok'}"
                )
            ],
            id="loop-body-reads-earlier-body-step",
        ),
        pytest.param(
            [
                loop(
                    "{id: inner, type: loop, loop: {for_each: 'loop.row.cells[*]', as: cell}, "
                    "body: [{id: b, type: form, condition: 'loop.row.x == loop.cell'}]}",
                    mode="for_each: 'steps.intake.outputs.items[*]', as: row",
                )
            ],
            id="nested-loops-see-outer-variable",
        ),
        pytest.param(
            [loop("{id: b, type: form}", mode="while: 'loop.item.n < 3'")],
            id="loop-while-sees-variable",
        ),
    ],
)
def test_references_that_resolve(steps: list[str]) -> None:
    load(wrapped(*steps))


def test_process_outputs_read_any_step_and_inputs() -> None:
    outputs = (
        "outputs:\n"
        "  - {name: ok, from: steps.s.outputs.done}\n"
        "  - {name: who, from: inputs.email}\n"
        "  - {name: all, from: 'steps.intake.outputs.items[*].id'}\n"
    )
    text = wrapped("- {id: s, type: form, outputs: [{name: done}]}", process=outputs)
    assert [o.from_ for o in load(text).outputs] == [
        "steps.s.outputs.done",
        "inputs.email",
        "steps.intake.outputs.items[*].id",
    ]


# --- references that cannot resolve ----------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "code", "path"),
    [
        pytest.param(
            [_step("{type: form, condition: 'steps.later.outputs.x'}"),
             "- {id: later, type: form, outputs: [{name: x}]}"],
            "forward_reference", "steps[1].condition", id="condition-forward",
        ),
        pytest.param(
            [_step("{type: form, condition: 'steps.s.outputs.x', outputs: [{name: x}]}")],
            "forward_reference", "steps[1].condition", id="condition-self",
        ),
        pytest.param(
            [_step("{type: form, condition: 'steps.nope.outputs.x == 1'}")],
            "unknown_step", "steps[1].condition", id="condition-unknown-step",
        ),
        pytest.param(
            [_step("{type: form, condition: 'steps.intake.outputs.aproved'}")],
            "unknown_output", "steps[1].condition", id="condition-unknown-output",
        ),
        pytest.param(
            [_step("{type: form, condition: 'inputs.amount > 1 and inputs.amout > 2'}")],
            "unknown_input", "steps[1].condition", id="condition-unknown-input",
        ),
        pytest.param(
            [_step("{type: form, condition: 'process.inputs.nope'}")],
            "unknown_input", "steps[1].condition", id="condition-unknown-process-input",
        ),
        pytest.param(
            [_step("{type: form, condition: 'process.amount > 1'}")],
            "invalid_reference", "steps[1].condition", id="condition-process-without-inputs",
        ),
        pytest.param(
            [_step("{type: form, condition: 'amount > 1'}")],
            "invalid_reference", "steps[1].condition", id="condition-bare-name",
        ),
        pytest.param(
            [_step("{type: form, condition: 'steps.intake.status == 1'}")],
            "invalid_reference", "steps[1].condition", id="condition-steps-without-outputs",
        ),
        pytest.param(
            [_step("{type: form, condition: 'inputs.amount =='}")],
            "invalid_expression", "steps[1].condition", id="condition-syntax",
        ),
        pytest.param(
            [_step("{type: automated, inputs: [{name: v, from: steps.later.outputs.x}]}"),
             "- {id: later, type: form, outputs: [{name: x}]}"],
            "forward_reference", "steps[1].inputs[0].from", id="from-forward",
        ),
        pytest.param(
            [_step("{type: automated, inputs: [{name: v, from: steps.intake.outputs.itemz}]}")],
            "unknown_output", "steps[1].inputs[0].from", id="from-unknown-output",
        ),
        pytest.param(
            [_step("{type: automated, inputs: [{name: v, from: process.inputs.amout}]}")],
            "unknown_input", "steps[1].inputs[0].from", id="from-unknown-input",
        ),
        pytest.param(
            [_step("{type: automated, inputs: [{name: v, from: 'steps.intake.outputs.'}]}")],
            "invalid_expression", "steps[1].inputs[0].from", id="from-syntax",
        ),
        pytest.param(
            [_step("{type: automated, outputs: [{name: g, value: 'Hi ${steps.zz.outputs.n}'}]}")],
            "unknown_step", "steps[1].outputs[0].value", id="template-unknown-step",
        ),
        pytest.param(
            [_step("{type: automated, outputs: [{name: g, value: 'Hi ${inputs.email'}]}")],
            "invalid_expression", "steps[1].outputs[0].value", id="template-unclosed",
        ),
        pytest.param(
            [_step("{type: automated, outputs: [{name: score}], exit_when: 'scroe < 1'}")],
            "unknown_output", "steps[1].exit_when", id="exit-when-bare-unknown",
        ),
        pytest.param(
            [_step("{type: automated, outputs: [{name: score}], exit_when: 'outputs.scor < 1'}")],
            "unknown_output", "steps[1].exit_when", id="exit-when-outputs-unknown",
        ),
        pytest.param(
            [_step("{type: automated, outputs: [{name: score}], exit_when: 'true', "
                   "exit_outputs: {why: '${outputs.nope}'}}")],
            "unknown_output", "steps[1].exit_outputs.why", id="exit-outputs-template",
        ),
        pytest.param(
            [_step("{type: form, outputs: [{name: kind}, {name: why, required_if: 'knd == 1'}]}")],
            "unknown_output", "steps[1].outputs[1].required_if", id="required-if-unknown",
        ),
        pytest.param(
            [_step("{type: wait, wait: {until: 'steps.later.outputs.x'}}"),
             "- {id: later, type: form, outputs: [{name: x}]}"],
            "forward_reference", "steps[1].wait.until", id="wait-until-forward",
        ),
        pytest.param(
            [_step("{type: wait, wait: {until_time: '${steps.zz.outputs.at}'}}")],
            "unknown_step", "steps[1].wait.until_time", id="wait-until-time-unknown",
        ),
        pytest.param(
            [loop("{id: b, type: form, outputs: [{name: xs}]}",
                  mode="for_each: 'steps.b.outputs.xs[*]'")],
            "forward_reference", "steps[1].loop.for_each", id="for-each-reads-own-body",
        ),
        pytest.param(
            [loop("{id: b, type: automated}", mode="for_each: 'inputs.amount', as: it"),
             _step("{type: form, condition: 'loop.it == 1'}")],
            "unknown_loop_variable", "steps[2].condition", id="loop-variable-after-loop",
        ),
        pytest.param(
            [loop("{id: b, type: automated, inputs: [{name: v, from: loop.item}]}",
                  mode="for_each: 'inputs.amount', as: it")],
            "unknown_loop_variable", "steps[1].body[0].inputs[0].from",
            id="loop-variable-wrong-name",
        ),
        pytest.param(
            ["- {id: each, type: loop, condition: 'loop.item', loop: {while: 'true'}, "
             "body: [{id: b, type: form}]}"],
            "unknown_loop_variable", "steps[1].condition", id="loop-variable-in-own-condition",
        ),
        pytest.param(
            [_step("{type: llm, prompt: 'Hello {{ name '}")],
            "invalid_template", "steps[1].prompt", id="llm-prompt-template",
        ),
        pytest.param(
            [_step("{type: llm, prompt: ok, system: '{% if x %}'}")],
            "invalid_template", "steps[1].system", id="llm-system-template",
        ),
        pytest.param(
            [_step("{type: notification, subject: '{{ a }', body: ok}")],
            "invalid_template", "steps[1].subject", id="notification-template",
        ),
        pytest.param(
            [_step("{type: judgment, judgment: {prompt: '{% for %}'}}")],
            "invalid_template", "steps[1].judgment.prompt", id="judgment-prompt-template",
        ),
    ],
)  # fmt: skip
def test_reference_that_cannot_resolve(steps: list[str], code: str, path: str) -> None:
    assert found(wrapped(*steps)) == [(code, f"process.{path}")]


@pytest.mark.parametrize(
    ("output", "code"),
    [
        pytest.param("{name: r, from: steps.intake.outputs.nope}", "unknown_output", id="output"),
        pytest.param("{name: r, from: steps.nowhere.outputs.x}", "unknown_step", id="step"),
        pytest.param("{name: r, from: inputs.nope}", "unknown_input", id="input"),
        pytest.param("{name: r, from: env.SECRET}", "env_not_allowed", id="env"),
        pytest.param("{name: r, from: 'steps..x'}", "invalid_expression", id="syntax"),
    ],
)
def test_process_output_from_that_cannot_resolve(output: str, code: str) -> None:
    text = wrapped(process=f"outputs:\n  - {output}\n")
    assert found(text) == [(code, "process.outputs[0].from")]


def test_reference_problem_messages_name_what_is_missing() -> None:
    text = wrapped(
        "- {id: s, type: form, condition: 'steps.intake.outputs.aproved'}",
        "- {id: t, type: form, condition: 'steps.u.outputs.x'}",
        "- {id: u, type: form, outputs: [{name: x}]}",
    )
    assert [p.message for p in problems_of(text)] == [
        "'steps.intake.outputs.aproved': step 'intake' declares no output 'aproved' "
        "(it declares: approved, items)",
        "'steps.u.outputs.x': step 'u' has not run yet at this point; "
        "a step may only read steps that come before it",
    ]


def test_repeat_until_reads_the_body_outputs() -> None:
    step = loop(
        "{id: attempt, type: automated, outputs: [{name: done, type: boolean}]}",
        mode="repeat_until: 'steps.attempt.outputs.done == true'",
    )
    load(wrapped(step))


def test_map_form_input_problem_has_the_file_path() -> None:
    text = wrapped("- {id: s, type: automated, inputs: {a: '${inputs.email}', b: '${inputs.x}'}}")
    assert found(text) == [("unknown_input", "process.steps[1].inputs.b")]


# --- env, callback_url, payload: only where they exist ---------------------------------------


@pytest.mark.parametrize(
    "webhook",
    [
        pytest.param("{url: 'https://api.example.com/v1?key=${API_KEY}'}", id="bare-env-name"),
        pytest.param("{url: '${env.BASE_URL}/orders'}", id="env-url"),
        pytest.param("{url: 'https://x.example', headers: {Authorization: 'Bearer ${env.T}'}}",
                     id="env-header"),
        pytest.param("{url: 'https://x.example', headers: {X-Key: '${API_KEY}'}}",
                     id="bare-env-header"),
        pytest.param("{url: 'https://x.example', body: {token: '${env.T}', n: [1, '${API_KEY}']}}",
                     id="env-body"),
        pytest.param("{url: 'https://x.example?cb=${callback_url}', response_mode: callback}",
                     id="callback-url"),
        pytest.param("{url: 'https://x.example', body: {reply_to: '${callback_url}'}}",
                     id="callback-body"),
        pytest.param("{url: 'HTTP://X.EXAMPLE/${steps.intake.outputs.approved}'}",
                     id="step-reference-in-url"),
    ],
)  # fmt: skip
def test_webhook_may_read_env_and_callback_url(webhook: str) -> None:
    load(wrapped(f"- {{id: s, type: webhook, webhook: {webhook}}}"))


@pytest.mark.parametrize(
    ("step", "code", "path"),
    [
        pytest.param("{type: form, condition: 'env.DEBUG == true'}", "env_not_allowed",
                     "condition", id="env-condition"),
        pytest.param("{type: automated, inputs: [{name: k, from: env.API_KEY}]}",
                     "env_not_allowed", "inputs[0].from", id="env-from"),
        pytest.param("{type: automated, inputs: [{name: k, value: '${env.API_KEY}'}]}",
                     "env_not_allowed", "inputs[0].value", id="env-template"),
        pytest.param("{type: wait, wait: {until_time: '${env.WHEN}'}}", "env_not_allowed",
                     "wait.until_time", id="env-wait"),
        pytest.param("{type: automated, inputs: [{name: k, value: '${API_KEY}'}]}",
                     "invalid_reference", "inputs[0].value", id="bare-env-outside-webhook"),
        pytest.param("{type: automated, inputs: [{name: k, value: '${callback_url}'}]}",
                     "invalid_reference", "inputs[0].value", id="callback-outside-webhook"),
        pytest.param("{type: automated, inputs: [{name: k, value: '${payload.x}'}]}",
                     "invalid_reference", "inputs[0].value", id="payload-outside-trigger"),
        pytest.param("{type: webhook, webhook: {url: 'https://x/${api_key}'}}",
                     "invalid_reference", "webhook.url", id="lowercase-bare-name"),
        pytest.param("{type: webhook, webhook: {url: 'ftp://x.example'}}", "invalid_url",
                     "webhook.url", id="url-scheme"),
        pytest.param("{type: webhook, webhook: {url: 'x.example/${env.P}'}}", "invalid_url",
                     "webhook.url", id="url-without-scheme"),
        pytest.param("{type: webhook, webhook: {url: 'https://x', body: {l: ['${steps.z.outputs.a}']}}}",  # noqa: E501
                     "unknown_step", "webhook.body.l[0]", id="body-unknown-step"),
        pytest.param("{type: webhook, webhook: {url: 'https://x', request_timeout: 5 min}}",
                     "invalid_duration", "webhook.request_timeout", id="request-timeout"),
    ],
)  # fmt: skip
def test_env_and_special_roots_outside_their_place(step: str, code: str, path: str) -> None:
    assert found(wrapped(_step(step))) == [(code, f"process.steps[1].{path}")]


def test_env_refusal_says_where_env_is_allowed() -> None:
    (problem,) = problems_of(wrapped(_step("{type: form, condition: 'env.DEBUG'}")))
    assert problem.message == (
        "'env.DEBUG': environment variables may only be read in webhook urls, headers and bodies"
    )


# --- triggers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        pytest.param("{type: api}", id="api"),
        pytest.param("{type: manual}", id="manual"),
        pytest.param(
            "{type: webhook, auth: {secret_env: GH_SECRET, provider: github, header: "
            "X-Hub-Signature-256, prefix: 'sha256='}, input_mapping: {email: "
            "'${payload.pull_request.user.email}', amount: '${payload.total}'}}",
            id="webhook",
        ),
        pytest.param("{type: schedule, cron: '50 7 * * 1-5'}", id="schedule"),
        pytest.param("{type: schedule, cron: '0 9 * * mon-fri', timezone: Europe/Berlin}",
                     id="schedule-names-timezone"),
        pytest.param("{type: schedule, cron: '@daily', timezone: America/Mexico_City}",
                     id="schedule-macro"),
        pytest.param("{type: interval, interval: 5s, catch_up: skip}", id="interval-minimum"),
        pytest.param("{type: interval, interval: 1h30m, inputs: {amount: 1}}", id="interval"),
    ],
)  # fmt: skip
def test_valid_trigger(trigger: str) -> None:
    load(wrapped(process=f"trigger: {trigger}\n"))


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        pytest.param("{type: schedule, cron: '61 * * * *'}", [("invalid_cron", "cron")],
                     id="cron-minute"),
        pytest.param("{type: schedule, cron: '* * * *'}", [("invalid_cron", "cron")],
                     id="cron-four-fields"),
        pytest.param("{type: schedule, cron: '@reboot'}", [("invalid_cron", "cron")],
                     id="cron-unknown-macro"),
        pytest.param("{type: schedule, cron: '0 9 * * funday'}", [("invalid_cron", "cron")],
                     id="cron-day-name"),
        pytest.param("{type: schedule, cron: '@daily', timezone: Mars/Olympus}",
                     [("invalid_timezone", "timezone")], id="timezone"),
        pytest.param("{type: schedule, cron: '@daily', timezone: ../../etc/passwd}",
                     [("invalid_timezone", "timezone")], id="timezone-path"),
        pytest.param("{type: schedule, cron: nope, timezone: Nowhere/X}",
                     [("invalid_cron", "cron"), ("invalid_timezone", "timezone")],
                     id="cron-and-timezone"),
        pytest.param("{type: interval, interval: 1s}", [("out_of_range", "interval")],
                     id="interval-too-short"),
        pytest.param("{type: interval, interval: 500ms}", [("out_of_range", "interval")],
                     id="interval-milliseconds"),
        pytest.param("{type: interval, interval: 5 minutes}", [("invalid_duration", "interval")],
                     id="interval-words"),
        pytest.param("{type: webhook, auth: {secret_env: S}, input_mapping: {emial: '${payload.e}'}}",  # noqa: E501
                     [("unknown_input", "input_mapping.emial")], id="mapping-unknown-input"),
        pytest.param("{type: webhook, auth: {secret_env: S}, input_mapping: {email: '${env.E}'}}",
                     [("invalid_reference", "input_mapping.email")], id="mapping-env"),
        pytest.param("{type: webhook, auth: {secret_env: S}, input_mapping: {email: '${payload'}}",
                     [("invalid_expression", "input_mapping.email")], id="mapping-syntax"),
        pytest.param("{type: webhook, auth: {secret_env: S}, input_mapping: "
                     "{email: '${steps.intake.outputs.approved}'}}",
                     [("invalid_reference", "input_mapping.email")], id="mapping-reads-a-step"),
    ],
)  # fmt: skip
def test_invalid_trigger(trigger: str, expected: list[tuple[str, str]]) -> None:
    text = wrapped(process=f"trigger: {trigger}\n")
    assert found(text) == [(code, f"process.trigger.{path}") for code, path in expected]


def test_cron_problem_says_what_is_wrong() -> None:
    (problem,) = problems_of(wrapped(process="trigger: {type: schedule, cron: '99 * * * *'}\n"))
    assert problem.message == "minute: 99 is outside 0-59"


def test_cron_with_a_superscript_digit_is_a_definition_error() -> None:
    text = wrapped(process="trigger: {type: schedule, cron: '² * * * *'}\n")
    assert found(text) == [("invalid_cron", "process.trigger.cron")]


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize("duration", ["30s", "15m", "48h", "7d", "1h30m", "500ms", "90", "2w"])
def test_valid_step_timeout(duration: str) -> None:
    load(wrapped(_step(f"{{type: form, timeout: '{duration}', on_timeout: escalate}}")))


@pytest.mark.parametrize(
    "duration", ["5 minutes", "''", "10y", "400d", "-5s", "PT5M", "1e3s", "s", "1m30"]
)
def test_invalid_step_timeout(duration: str) -> None:
    (problem,) = problems_of(wrapped(_step(f"{{type: form, timeout: {duration}}}")))
    assert (problem.code, problem.path) == ("invalid_duration", "process.steps[1].timeout")


@pytest.mark.parametrize(
    ("step", "path"),
    [
        pytest.param("{type: automated, retry: {max: 2, initial: soon}}", "retry.initial",
                     id="retry-initial"),
        pytest.param("{type: automated, retry: {max: 2, max_delay: 1 hour}}", "retry.max_delay",
                     id="retry-max-delay"),
        pytest.param("{type: form, sla: {target: 2 days}}", "sla.target", id="step-sla"),
        pytest.param("{type: webhook, webhook: {url: 'https://x', poll_timeout: 1y}}",
                     "webhook.poll_timeout", id="webhook-poll-timeout"),
    ],
)  # fmt: skip
def test_invalid_duration_anywhere(step: str, path: str) -> None:
    assert found(wrapped(_step(step))) == [("invalid_duration", f"process.steps[1].{path}")]


def test_invalid_process_level_durations() -> None:
    process = "sla: {target: 1 week, warning: 3d}\non_error: {retry_policy: {initial: never}}\n"
    assert found(wrapped(process=process)) == [
        ("invalid_duration", "process.sla.target"),
        ("invalid_duration", "process.on_error.retry_policy.initial"),
    ]


def test_on_timeout_needs_a_timeout() -> None:
    text = wrapped(_step("{type: form, on_timeout: skip}"))
    assert found(text) == [("missing_key", "process.steps[1].on_timeout")]


# --- run paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["scripts/check.sh", "./steps/x.rb", "a/./b.py", "run.sh"])
def test_relative_run_path_is_accepted(run: str) -> None:
    load(wrapped(_step(f"{{type: automated, run: '{run}'}}")))


@pytest.mark.parametrize(
    ("run", "why"),
    [
        ("/usr/bin/env", "is absolute"),
        ("/", "is absolute"),
        ("~/x.sh", "is absolute"),
        ("~root/x.sh", "is absolute"),
        ("../x.sh", "leaves the process directory"),
        ("scripts/../../x.sh", "leaves the process directory"),
        ("", "may not be empty"),
        ("   ", "may not be empty"),
    ],
)
def test_escaping_run_path_is_refused(run: str, why: str) -> None:
    (problem,) = problems_of(wrapped(_step(f"{{type: automated, run: '{run}'}}")))
    assert (problem.code, problem.path) == ("invalid_run_path", "process.steps[1].run")
    assert why in problem.message


def test_prompt_file_path_is_checked_like_a_run_path() -> None:
    text = wrapped(_step("{type: llm, prompt_file: ../prompts/a.md}"))
    assert found(text) == [("invalid_run_path", "process.steps[1].prompt_file")]


# --- profiles ---------------------------------------------------------------------------------

LOCAL_ONLY = (
    "- {id: say, type: shell, run: echo hi}",
    "- {id: pause, type: noop}",
    loop("{id: inner, type: shell, run: 'echo ${inputs.email}'}"),
)


def test_server_refuses_shell_and_noop() -> None:
    problems = problems_of(wrapped(*LOCAL_ONLY))
    assert [(p.code, p.path) for p in problems] == [
        ("unsupported_step_type", "process.steps[1].type"),
        ("unsupported_step_type", "process.steps[2].type"),
        ("unsupported_step_type", "process.steps[3].body[0].type"),
    ]
    assert problems[0].message == "'shell' steps run only in the local CLI; a server refuses them"


def test_local_profile_accepts_shell_and_noop() -> None:
    definition = load(wrapped(*LOCAL_ONLY), profile=Profile.LOCAL)
    assert [step.step_type for step in definition.steps[1:3]] == ["shell", "noop"]


def test_local_profile_still_checks_references() -> None:
    text = wrapped("- {id: say, type: noop, condition: 'inputs.nope'}")
    assert found(text, profile=Profile.LOCAL) == [("unknown_input", "process.steps[1].condition")]


# --- limits -------------------------------------------------------------------------------------


def _many_forms(count: int, prefix: str = "f") -> list[str]:
    return [f"- {{id: {prefix}{index}, type: form}}" for index in range(count)]


def test_step_limit_counts_every_step() -> None:
    load(wrapped(*_many_forms(MAX_STEPS - 1)))  # plus `intake`: exactly the limit
    (problem,) = problems_of(wrapped(*_many_forms(MAX_STEPS)))
    assert (problem.code, problem.path) == ("too_many_steps", "process.steps")
    assert problem.message == f"{MAX_STEPS + 1} steps; the limit is {MAX_STEPS}"


def test_step_limit_counts_loop_bodies() -> None:
    body = ", ".join(f"{{id: b{index}, type: form}}" for index in range(MAX_STEPS - 1))
    assert found(wrapped(loop(body))) == [("too_many_steps", "process.steps")]


def _nested_loops(depth: int) -> str:
    step = "{id: leaf, type: form}"
    for level in range(depth, 0, -1):
        step = f"{{id: l{level}, type: loop, loop: {{while: 'true'}}, body: [{step}]}}"
    return "- " + step


def test_loop_depth_limit() -> None:
    load(wrapped(_nested_loops(MAX_LOOP_DEPTH)))
    text = wrapped(_nested_loops(MAX_LOOP_DEPTH + 1))
    deepest = "process.steps[1]" + ".body[0]" * MAX_LOOP_DEPTH
    assert found(text) == [("too_deep", deepest)]


def _form_with_outputs(count: int) -> str:
    fields = ", ".join(f"{{name: o{index}}}" for index in range(count))
    return f"- {{id: s, type: form, outputs: [{fields}]}}"


def test_field_limit() -> None:
    load(wrapped(_form_with_outputs(MAX_FIELDS)))
    text = wrapped(_form_with_outputs(MAX_FIELDS + 1))
    assert found(text) == [("too_many_fields", "process.steps[1].outputs")]


# --- duplicates and field rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "paths"),
    [
        pytest.param(["- {id: intake, type: form}"], ["steps[1].id"], id="top-level"),
        pytest.param([loop("{id: b, type: form}, {id: b, type: form}")], ["steps[1].body[1].id"],
                     id="in-a-loop-body"),
        pytest.param([loop("{id: intake, type: form}")], ["steps[1].body[0].id"],
                     id="body-repeats-a-top-level-id"),
        pytest.param([loop("{id: b, type: form}"), "- {id: b, type: form}"], ["steps[2].id"],
                     id="top-level-repeats-a-body-id"),
        pytest.param([loop("{id: b, type: form}", step_id="x"), loop("{id: b, type: form}")],
                     ["steps[2].body[0].id"], id="two-bodies"),
    ],
)  # fmt: skip
def test_duplicate_step_id(steps: list[str], paths: list[str]) -> None:
    problems = problems_of(wrapped(*steps))
    assert [(p.code, p.path) for p in problems] == [
        ("duplicate_step_id", f"process.{path}") for path in paths
    ]
    assert "is used more than once" in problems[0].message


@pytest.mark.parametrize(
    ("outputs", "code", "path"),
    [
        pytest.param("[{name: o}, {name: o}]", "duplicate_field", "outputs[1].name", id="dup"),
        pytest.param("[{name: o, type: enum}]", "missing_key", "outputs[0].values", id="enum"),
        pytest.param("[{name: o, type: enum, values: []}]", "missing_key", "outputs[0].values",
                     id="enum-empty-values"),
        pytest.param("[{name: o, values: [a, b]}]", "invalid_value", "outputs[0].values",
                     id="values-on-string"),
    ],
)  # fmt: skip
def test_field_rules(outputs: str, code: str, path: str) -> None:
    text = wrapped(_step(f"{{type: form, outputs: {outputs}}}"))
    assert found(text) == [(code, f"process.steps[1].{path}")]


@pytest.mark.parametrize(
    ("process", "steps", "path"),
    [
        pytest.param("", [_step("{type: form, outputs: [{name: o, required_if: 'a =='}]}")],
                     "steps[1].outputs[0].required_if", id="step-output"),
        pytest.param("outputs: [{name: o, required_if: 'a =='}]\n", [],
                     "outputs[0].required_if", id="process-output"),
    ],
)  # fmt: skip
def test_required_if_syntax_error_is_reported_once(
    process: str, steps: list[str], path: str
) -> None:
    assert found(wrapped(*steps, process=process)) == [("invalid_expression", f"process.{path}")]


def test_required_if_syntax_error_in_process_input() -> None:
    text = HEAD.replace("{name: email, type: string}", "{name: email, required_if: 'a =='}")
    assert found(text) == [("invalid_expression", "process.inputs[1].required_if")]


def test_required_if_of_a_process_input_names_a_sibling() -> None:
    text = HEAD.replace("{name: email, type: string}", "{name: email, required_if: 'amout > 1'}")
    assert found(text) == [("unknown_output", "process.inputs[1].required_if")]


def test_duplicate_process_input() -> None:
    text = HEAD.replace("{name: email, type: string}", "{name: amount, type: string}")
    assert found(text) == [("duplicate_field", "process.inputs[1].name")]


# --- every problem at once, in file order ---------------------------------------------------

FIVE_PROBLEMS = """\
opensop: "0.1"
process:
  name: five
  version: "1"
  trigger: {type: schedule, cron: "99 * * * *"}
  inputs:
    - {name: amount, type: number}
  outputs:
    - {name: result, from: steps.nowhere.outputs.x}
  steps:
    - id: first
      type: form
      timeout: 5 minutes
      condition: steps.second.outputs.ok == true
    - id: second
      type: automated
      run: /usr/bin/env
      outputs: [{name: ok, type: boolean}]
"""


def test_all_static_problems_are_reported_at_once_in_file_order() -> None:
    problems = problems_of(FIVE_PROBLEMS)
    assert [(p.code, p.path, p.line, p.column) for p in problems] == [
        ("invalid_cron", "process.trigger.cron", 5, 29),
        ("unknown_step", "process.outputs[0].from", 9, 22),
        ("invalid_duration", "process.steps[0].timeout", 13, 7),
        ("forward_reference", "process.steps[0].condition", 14, 7),
        ("invalid_run_path", "process.steps[1].run", 17, 7),
    ]


def test_check_problems_are_sorted_by_line_not_by_check_order() -> None:
    # Steps are checked before process outputs, but the outputs come first in the file.
    text = wrapped(
        _step("{type: form, condition: 'inputs.nope'}"),
        process="outputs:\n  - {name: r, from: inputs.gone}\n",
    )
    problems = problems_of(text)
    assert [p.path for p in problems] == ["process.outputs[0].from", "process.steps[1].condition"]
    assert problems[0].line is not None and problems[1].line is not None
    assert problems[0].line < problems[1].line
