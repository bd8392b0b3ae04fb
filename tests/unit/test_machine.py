"""The pure state machine: given an instance, a definition and a command, what changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opensop.definition.loader import load_definition
from opensop.definition.models import ProcessDefinition
from opensop.engine import machine
from opensop.engine.records import InstanceRun
from opensop.engine.states import InstanceState, StepState, SubState
from opensop.errors import InvalidTransition

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def definition(steps: str, *, inputs: str = "[]", outputs: str = "[]") -> ProcessDefinition:
    text = (
        "opensop: '0.1'\nprocess:\n  name: p\n  version: '1'\n"
        f"  inputs: {inputs}\n  outputs: {outputs}\n  steps:\n{steps}"
    )
    return load_definition(text, filename="p.sop.yaml")


def started(d: ProcessDefinition, inputs: dict[str, Any] | None = None) -> InstanceRun:
    run = machine.new_instance(
        instance_id="01HXYZ0000000000000000000A",
        workspace_id="w",
        definition=d,
        inputs=inputs or {},
        metadata=None,
        now=NOW,
    )
    transition = machine.start(run, d, NOW, "token:test")
    return transition.instance


def submit(d: ProcessDefinition, run: InstanceRun, step_id: str, outputs: dict[str, Any]) -> Any:
    return machine.submit(
        run, d, step_id, outputs, decided_by="human:ana", confidence=None, now=LATER, actor="t"
    )


FORM_THEN_APPROVAL = """\
    - {id: collect, type: form, outputs: [{name: amount, type: number}]}
    - {id: approve, type: approval}
"""


@pytest.mark.parametrize(
    ("step_type", "block", "sub_state"),
    [
        ("form", "", SubState.WAITING_FOR_INPUT),
        ("approval", "", SubState.WAITING_FOR_APPROVAL),
        ("judgment", ", judgment: {allow_agent: true}", SubState.ESCALATED),
        ("automated", "", SubState.WAITING_FOR_WORKER),
    ],
)
def test_each_waiting_step_type_parks_with_its_sub_state(
    step_type: str, block: str, sub_state: SubState
) -> None:
    d = definition(f"    - {{id: a, type: {step_type}{block}}}\n")
    run = started(d)
    assert run.state is InstanceState.RUNNING
    assert run.steps["a"].state is StepState.ACTIVE
    assert run.steps["a"].sub_state is sub_state
    assert run.steps["a"].attempt == 1
    assert run.steps["a"].started_at == NOW


def test_start_stops_at_the_first_waiting_step_and_leaves_the_rest_pending() -> None:
    run = started(definition(FORM_THEN_APPROVAL))
    assert run.steps["collect"].state is StepState.ACTIVE
    assert run.steps["approve"].state is StepState.PENDING


def test_submit_completes_the_step_and_activates_the_next() -> None:
    d = definition(FORM_THEN_APPROVAL)
    transition = submit(d, started(d), "collect", {"amount": 12})
    run = transition.instance
    assert run.steps["collect"].state is StepState.COMPLETED
    assert run.steps["collect"].outputs == {"amount": 12}
    assert run.steps["collect"].decided_by == "human:ana"
    assert run.steps["collect"].completed_at == LATER
    assert run.steps["approve"].sub_state is SubState.WAITING_FOR_APPROVAL
    assert transition.changed_steps == {"collect", "approve"}
    assert [e.type for e in transition.events] == ["step.completed", "step.activated"]


def test_last_submit_completes_the_instance_with_outputs_from_references() -> None:
    d = definition(
        FORM_THEN_APPROVAL,
        outputs="[{name: total, from: steps.collect.outputs.amount},"
        " {name: ok, from: steps.approve.outputs.approved}]",
    )
    run = submit(d, started(d), "collect", {"amount": 12}).instance
    run = submit(d, run, "approve", {"approved": True}).instance
    assert run.state is InstanceState.COMPLETED
    assert run.completed_at == LATER
    assert run.outputs == {"total": 12, "ok": True}


def test_false_condition_skips_the_step() -> None:
    d = definition(
        "    - {id: a, type: form, condition: \"process.inputs.country == 'MX'\"}\n"
        "    - {id: b, type: form}\n",
        inputs="[{name: country, type: string}]",
    )
    run = started(d, {"country": "US"})
    assert run.steps["a"].state is StepState.SKIPPED
    assert run.steps["b"].state is StepState.ACTIVE


def test_true_condition_activates_the_step() -> None:
    d = definition(
        "    - {id: a, type: form, condition: \"process.inputs.country == 'MX'\"}\n",
        inputs="[{name: country, type: string}]",
    )
    assert started(d, {"country": "MX"}).steps["a"].state is StepState.ACTIVE


def test_all_steps_skipped_completes_at_start() -> None:
    d = definition("    - {id: a, type: form, condition: 'false'}\n")
    run = started(d)
    assert run.state is InstanceState.COMPLETED
    assert run.outputs == {}


def test_literal_value_outputs_complete_without_waiting() -> None:
    d = definition(
        "    - id: greet\n      type: automated\n"
        "      outputs: [{name: text, type: string, value: 'Hello, ${inputs.who}!'},"
        " {name: n, type: number, value: '${inputs.n}'}]\n"
        "    - {id: after, type: form}\n",
        inputs="[{name: who, type: string}, {name: n, type: number}]",
    )
    run = started(d, {"who": "Ada", "n": 3})
    assert run.steps["greet"].state is StepState.COMPLETED
    assert run.steps["greet"].outputs == {"text": "Hello, Ada!", "n": 3}
    assert run.steps["after"].state is StepState.ACTIVE


def test_value_form_value_process_completes_after_one_submit() -> None:
    d = definition(
        "    - {id: a, type: automated, outputs: [{name: x, type: number, value: 1}]}\n"
        "    - {id: b, type: form, outputs: [{name: y, type: number}]}\n"
        "    - {id: c, type: automated, outputs: [{name: z, type: string,"
        " value: '${steps.b.outputs.y}-${steps.a.outputs.x}'}]}\n",
        outputs="[{name: z, from: steps.c.outputs.z}]",
    )
    run = submit(d, started(d), "b", {"y": 2}).instance
    assert run.state is InstanceState.COMPLETED
    assert run.outputs == {"z": "2-1"}


def test_exit_when_completes_early_with_exit_outputs_and_skips_the_rest() -> None:
    d = definition(
        "    - id: gate\n      type: form\n      outputs: [{name: score, type: number}]\n"
        "      exit_when: 'score < 0.4'\n"
        "      exit_outputs: {outcome: rejected, seen: '${outputs.score}'}\n"
        "    - {id: next, type: form}\n",
        outputs="[{name: outcome, type: string}]",
    )
    low = submit(d, started(d), "gate", {"score": 0.1})
    assert low.instance.state is InstanceState.COMPLETED
    assert low.instance.outputs == {"outcome": "rejected", "seen": 0.1}
    assert low.instance.steps["next"].state is StepState.SKIPPED
    assert "instance.exited" in [e.type for e in low.events]
    high = submit(d, started(d), "gate", {"score": 0.9})
    assert high.instance.state is InstanceState.RUNNING
    assert high.instance.steps["next"].state is StepState.ACTIVE


def test_exit_when_also_reads_outputs_dot_name() -> None:
    d = definition(
        "    - {id: g, type: form, outputs: [{name: s, type: number}],"
        " exit_when: 'outputs.s > 5'}\n"
        "    - {id: n, type: form}\n"
    )
    assert submit(d, started(d), "g", {"s": 6}).instance.state is InstanceState.COMPLETED


def test_step_inputs_resolve_references_and_templates() -> None:
    d = definition(
        "    - {id: a, type: form, outputs: [{name: x, type: string}]}\n"
        "    - id: b\n      type: form\n"
        "      inputs: {greeting: 'hi ${steps.a.outputs.x}', raw: '${inputs.n}'}\n",
        inputs="[{name: n, type: number}]",
    )
    run = submit(d, started(d, {"n": 4}), "a", {"x": "there"}).instance
    assert run.steps["b"].inputs == {"greeting": "hi there", "raw": 4}


def test_absent_optional_input_and_undeclared_output_read_as_null() -> None:
    d = definition(
        "    - {id: a, type: form, outputs: [{name: x, type: string}, {name: y, type: string}]}\n"
        "    - id: b\n      type: form\n"
        "      inputs: [{name: o, from: process.inputs.opt}, {name: y, from: steps.a.outputs.y}]\n",
        inputs="[{name: opt, type: string}]",
    )
    run = submit(d, started(d), "a", {"x": "1"}).instance
    assert run.steps["b"].inputs == {"o": None, "y": None}


def test_reference_to_a_skipped_step_fails_unless_a_default_is_declared() -> None:
    steps = (
        "    - {id: a, type: form, condition: 'false', outputs: [{name: x, type: string}]}\n"
        "    - id: b\n      type: form\n      inputs: [{name: x, from: steps.a.outputs.x%s}]\n"
    )
    failing = started(definition(steps % ""))
    assert failing.state is InstanceState.FAILED
    assert failing.steps["b"].state is StepState.FAILED
    assert failing.steps["b"].error == {
        "code": "unresolved_reference",
        "message": "input reference 'steps.a.outputs.x' did not resolve",
    }
    assert failing.error is not None and failing.error["step_id"] == "b"
    defaulted = started(definition(steps % ", default: none-given"))
    assert defaulted.state is InstanceState.RUNNING
    assert defaulted.steps["b"].inputs == {"x": "none-given"}


def test_continue_on_error_keeps_the_instance_going() -> None:
    d = definition(
        "    - {id: a, type: form, condition: 'false', outputs: [{name: x, type: string}]}\n"
        "    - id: b\n      type: form\n      continue_on_error: true\n"
        "      inputs: [{name: x, from: steps.a.outputs.x}]\n"
        "    - {id: c, type: form}\n"
    )
    run = started(d)
    assert run.steps["b"].state is StepState.FAILED
    assert run.state is InstanceState.RUNNING
    assert run.steps["c"].state is StepState.ACTIVE


def test_cancel_skips_pending_and_active_steps() -> None:
    d = definition(FORM_THEN_APPROVAL)
    transition = machine.cancel(started(d), "no longer needed", LATER, "token:t")
    run = transition.instance
    assert run.state is InstanceState.CANCELLED
    assert run.completed_at == LATER
    assert {s.state for s in run.steps.values()} == {StepState.SKIPPED}
    assert run.steps["collect"].sub_state is None
    assert transition.events[-1].type == "instance.cancelled"


@pytest.mark.parametrize("terminal", ["cancel", "complete"])
def test_terminal_instances_refuse_cancel_and_submit(terminal: str) -> None:
    d = definition("    - {id: a, type: form}\n")
    run = started(d)
    if terminal == "cancel":
        run = machine.cancel(run, None, LATER, None).instance
    else:
        run = submit(d, run, "a", {}).instance
    with pytest.raises(InvalidTransition):
        machine.cancel(run, None, LATER, None)
    with pytest.raises(InvalidTransition):
        submit(d, run, "a", {})


def test_submit_to_a_pending_step_is_an_invalid_transition() -> None:
    d = definition(FORM_THEN_APPROVAL)
    with pytest.raises(InvalidTransition, match="approve"):
        submit(d, started(d), "approve", {"approved": True})


def test_events_record_the_whole_story() -> None:
    d = definition(FORM_THEN_APPROVAL)
    start = machine.start(
        machine.new_instance(
            instance_id="01HXYZ0000000000000000000B",
            workspace_id="w",
            definition=d,
            inputs={},
            metadata={"ticket": 7},
            now=NOW,
        ),
        d,
        NOW,
        "token:t",
    )
    assert [(e.type, e.step_id) for e in start.events] == [
        ("instance.started", None),
        ("step.activated", "collect"),
    ]
    assert start.events[0].actor == "token:t"
    assert start.instance.metadata == {"ticket": 7}


def test_instance_facts_are_readable_from_templates() -> None:
    d = definition(
        "    - {id: a, type: automated, outputs: [{name: who, type: string,"
        " value: '${instance.id}@${instance.process}'}]}\n"
    )
    run = started(d)
    assert run.steps["a"].outputs == {"who": "01HXYZ0000000000000000000A@p"}
