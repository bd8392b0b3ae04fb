"""What references read while an instance runs, and how step inputs and literal outputs
are computed from it. Pure functions; parsed expressions are cached by their text."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from opensop.definition import models
from opensop.definition.expressions import Condition, parse_condition
from opensop.definition.references import (
    MISSING,
    Reference,
    UnresolvedReference,
    parse_reference,
    resolve,
)
from opensop.definition.templates import Template, parse_template
from opensop.engine.records import InstanceRun
from opensop.engine.states import StepState


def build_context(instance: InstanceRun, definition: models.ProcessDefinition) -> dict[str, Any]:
    """The data references read: inputs, step outputs, trigger payload, instance facts.

    Declared process inputs that were not given, and declared outputs a completed step
    did not produce, read as null. Only what does not exist (a step that was skipped or
    has not run) is missing.
    """
    inputs = {field.name: None for field in definition.inputs}
    inputs.update(instance.inputs)
    step_outputs: dict[str, Any] = {}
    for step in definition.steps:
        run = instance.steps.get(step.id)
        if run is None or (run.state is not StepState.COMPLETED and run.outputs is None):
            continue
        outputs = {field.name: None for field in step.outputs}
        outputs.update(run.outputs or {})
        step_outputs[step.id] = {"outputs": outputs}
    return {
        "process": {"inputs": inputs},
        "steps": step_outputs,
        "trigger": {"payload": instance.trigger_payload},
        "instance": {
            "id": instance.id,
            "started_at": instance.started_at.isoformat().replace("+00:00", "Z"),
            "process": instance.process_name,
            "version": instance.process_version,
            "metadata": instance.metadata or {},
        },
    }


def resolve_step_inputs(step: models.StepBase, context: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs from references and templates.

    A reference that cannot resolve (to a skipped step, say) takes the input's declared
    `default` when it has one, and otherwise raises UnresolvedReference.
    """
    values: dict[str, Any] = {}
    for step_input in step.inputs:
        if step_input.from_ is not None:
            value = resolve(reference(step_input.from_), context)
            if value is MISSING:
                if "default" not in step_input.model_fields_set:
                    raise UnresolvedReference(step_input.from_)
                value = step_input.default
            values[step_input.name] = value
        elif step_input.value is not None:
            values[step_input.name] = render(step_input.value, context)
        else:
            values[step_input.name] = step_input.default
    return values


def process_outputs(definition: models.ProcessDefinition, instance: InstanceRun) -> dict[str, Any]:
    context = build_context(instance, definition)
    outputs: dict[str, Any] = {}
    for declared in definition.outputs:
        if declared.from_ is None:
            continue
        value = resolve(reference(declared.from_), context)
        outputs[declared.name] = None if value is MISSING else value
    return outputs


def has_literal_outputs(step: models.StepBase) -> bool:
    return bool(step.outputs) and all(output.value is not None for output in step.outputs)


def literal_outputs(step: models.StepBase, context: Mapping[str, Any]) -> dict[str, Any]:
    return {output.name: render(output.value, context) for output in step.outputs}


def render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return template(value).render(context)
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, context) for item in value]
    return value


def render_lenient(value: Any, context: Mapping[str, Any]) -> Any:
    try:
        return render(value, context)
    except UnresolvedReference:
        return None


@lru_cache(maxsize=4096)
def condition(text: str) -> Condition:
    return parse_condition(text)


@lru_cache(maxsize=4096)
def template(text: str) -> Template:
    return parse_template(text)


@lru_cache(maxsize=4096)
def reference(text: str) -> Reference:
    return parse_reference(text.strip())
