"""Rules that span fields: references, step order, durations, paths, schedules.

Runs on a shape-valid ``ProcessDefinition`` and returns every problem found, each with
its path relative to the process mapping. Nothing here does I/O.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import jinja2
import jinja2.sandbox

from opensop.definition import models
from opensop.definition.cron import InvalidCron, parse_cron
from opensop.definition.durations import InvalidDuration, parse_duration
from opensop.definition.expressions import (
    ExpressionError,
    Reference,
    parse_condition,
    parse_reference,
    parse_template,
)
from opensop.definition.fields import Field, FieldType
from opensop.definition.problems import PathTuple, RawProblem

MAX_STEPS = 500  # all steps, loop bodies included
MAX_LOOP_DEPTH = 3
MAX_FIELDS = 200  # per inputs/outputs list
MIN_INTERVAL_SECONDS = 5.0

# Roots a reference may start with, and where each is allowed.
_CONTEXT_ROOTS = frozenset({"process", "inputs", "steps", "trigger", "instance"})
_JINJA = jinja2.sandbox.ImmutableSandboxedEnvironment()


@dataclass
class Scope:
    """What a reference may see at one place in the file."""

    inputs: frozenset[str]
    steps: dict[str, models.StepBase]  # every step id in the process
    visible: frozenset[str]  # step ids that complete before this place
    loop_vars: frozenset[str] = frozenset()
    own_outputs: frozenset[str] | None = None  # exit_when / required_if: bare names
    env_allowed: bool = False  # webhook url, headers and body only
    payload_allowed: bool = False  # trigger input_mapping only
    callback_allowed: bool = False  # webhook templates only
    extra_roots: frozenset[str] = field(default_factory=frozenset)


def check_definition(
    definition: models.ProcessDefinition, *, server_profile: bool = True
) -> list[RawProblem]:
    return list(_Checker(definition, server_profile).run())


class _Checker:
    def __init__(self, definition: models.ProcessDefinition, server_profile: bool) -> None:
        self.definition = definition
        self.server_profile = server_profile
        self.inputs = frozenset(f.name for f in definition.inputs)
        self.all_steps: dict[str, models.StepBase] = {}

    def run(self) -> Iterator[RawProblem]:
        yield from self._check_counts()
        yield from self._check_fields(self.definition.inputs, ("inputs",))
        input_scope = _sibling_scope(Scope(self.inputs, {}, frozenset()), self.definition.inputs)
        for index, declared in enumerate(self.definition.inputs):
            if declared.required_if is not None:
                yield from self._check_condition(
                    declared.required_if, input_scope, ("inputs", index, "required_if")
                )
        yield from self._check_fields(self.definition.outputs, ("outputs",))
        yield from self._check_trigger()
        yield from self._check_sla(self.definition.sla, ("sla",))
        if self.definition.on_error and self.definition.on_error.retry_policy:
            yield from self._check_retry(
                self.definition.on_error.retry_policy, ("on_error", "retry_policy")
            )
        yield from self._collect_ids(self.definition.steps, ("steps",))
        yield from self._check_steps(
            self.definition.steps, ("steps",), visible=frozenset(), loop_vars=frozenset()
        )
        everything = Scope(self.inputs, self.all_steps, frozenset(self.all_steps))
        for index, output in enumerate(self.definition.outputs):
            if output.from_ is not None:
                yield from self._check_reference_text(
                    output.from_, everything, ("outputs", index, "from")
                )
            if output.required_if:
                yield from self._check_condition(
                    output.required_if,
                    _sibling_scope(everything, self.definition.outputs),
                    ("outputs", index, "required_if"),
                )

    # -- structure -------------------------------------------------------------------

    def _check_counts(self) -> Iterator[RawProblem]:
        total = sum(1 for _ in _walk(self.definition.steps))
        if total > MAX_STEPS:
            yield _problem(("steps",), "too_many_steps", f"{total} steps; the limit is {MAX_STEPS}")
        for path, depth in _loop_depths(self.definition.steps, ("steps",), 1):
            if depth > MAX_LOOP_DEPTH:
                yield _problem(
                    path, "too_deep", f"loops nest {depth} deep; the limit is {MAX_LOOP_DEPTH}"
                )

    def _collect_ids(
        self, steps: Sequence[models.StepBase], path: PathTuple
    ) -> Iterator[RawProblem]:
        for index, step in enumerate(steps):
            if step.id in self.all_steps:
                yield _problem(
                    (*path, index, "id"),
                    "duplicate_step_id",
                    f"step id '{step.id}' is used more than once; step ids must be unique",
                )
            else:
                self.all_steps[step.id] = step
            if isinstance(step, models.LoopStep):
                yield from self._collect_ids(step.body, (*path, index, "body"))

    def _check_fields(self, fields: Sequence[Field], path: PathTuple) -> Iterator[RawProblem]:
        if len(fields) > MAX_FIELDS:
            yield _problem(path, "too_many_fields", f"the limit is {MAX_FIELDS} fields")
        seen: set[str] = set()
        for index, declared in enumerate(fields):
            here = (*path, index)
            if declared.name in seen:
                yield _problem(
                    (*here, "name"),
                    "duplicate_field",
                    f"field '{declared.name}' is declared twice",
                )
            seen.add(declared.name)
            if declared.type is FieldType.ENUM and not declared.values:
                yield _problem(
                    (*here, "values"), "missing_key", "an enum field needs a non-empty `values`"
                )
            if declared.values is not None and declared.type is not FieldType.ENUM:
                yield _problem(
                    (*here, "values"),
                    "invalid_value",
                    f"`values` only applies to enum fields, not {declared.type}",
                )

    def _check_trigger(self) -> Iterator[RawProblem]:
        trigger = self.definition.trigger
        if isinstance(trigger, models.ScheduleTrigger):
            try:
                parse_cron(trigger.cron)
            except InvalidCron as error:
                yield _problem(("trigger", "cron"), "invalid_cron", str(error))
            yield from _check_timezone(trigger.timezone, ("trigger", "timezone"))
        elif isinstance(trigger, models.IntervalTrigger):
            seconds = yield from _check_duration(trigger.interval, ("trigger", "interval"))
            if seconds is not None and seconds < MIN_INTERVAL_SECONDS:
                yield _problem(
                    ("trigger", "interval"),
                    "out_of_range",
                    f"an interval must be at least {MIN_INTERVAL_SECONDS:g}s",
                )
        elif isinstance(trigger, models.WebhookTrigger):
            scope = Scope(self.inputs, {}, frozenset(), payload_allowed=True)
            for name, value in trigger.input_mapping.items():
                here: PathTuple = ("trigger", "input_mapping", name)
                if name not in self.inputs:
                    yield _problem(here, "unknown_input", f"the process declares no input '{name}'")
                if isinstance(value, str):
                    yield from self._check_template(value, scope, here)

    def _check_sla(self, sla: models.Sla | None, path: PathTuple) -> Iterator[RawProblem]:
        if sla is None:
            return
        for key in ("target", "warning"):
            text = getattr(sla, key)
            if text is not None:
                yield from _check_duration(text, (*path, key))

    def _check_retry(self, retry: models.RetryPolicy, path: PathTuple) -> Iterator[RawProblem]:
        yield from _check_duration(retry.initial, (*path, "initial"))
        if retry.max_delay is not None:
            yield from _check_duration(retry.max_delay, (*path, "max_delay"))

    # -- steps -----------------------------------------------------------------------

    def _check_steps(
        self,
        steps: Sequence[models.StepBase],
        path: PathTuple,
        *,
        visible: frozenset[str],
        loop_vars: frozenset[str],
    ) -> Iterator[RawProblem]:
        for index, step in enumerate(steps):
            here = (*path, index)
            scope = Scope(self.inputs, self.all_steps, visible, loop_vars)
            yield from self._check_step(step, here, scope)
            if isinstance(step, models.LoopStep):
                inner = loop_vars | {step.loop.as_}
                yield from self._check_steps(
                    step.body, (*here, "body"), visible=visible, loop_vars=inner
                )
            visible = visible | {step.id}

    def _check_step(
        self, step: models.StepBase, path: PathTuple, scope: Scope
    ) -> Iterator[RawProblem]:
        if self.server_profile and step.step_type in models.LOCAL_ONLY_STEP_TYPES:
            yield _problem(
                (*path, "type"),
                "unsupported_step_type",
                f"'{step.step_type}' steps run only in the local CLI; a server refuses them",
            )
        yield from self._check_fields(step.outputs, (*path, "outputs"))
        for index, step_input in enumerate(step.inputs):
            where = (*path, "inputs", index)
            if step_input.from_ is not None:
                yield from self._check_reference_text(step_input.from_, scope, (*where, "from"))
            if isinstance(step_input.value, str):
                yield from self._check_template(step_input.value, scope, (*where, "value"))
        if step.condition is not None:
            yield from self._check_condition(step.condition, scope, (*path, "condition"))
        if step.timeout is not None:
            yield from _check_duration(step.timeout, (*path, "timeout"))
        elif step.on_timeout is not None:
            yield _problem(
                (*path, "on_timeout"), "missing_key", "`on_timeout` needs a `timeout` to act on"
            )
        if step.retry is not None:
            yield from self._check_retry(step.retry, (*path, "retry"))
        yield from self._check_sla(step.sla, (*path, "sla"))
        own = step.declared_output_names() or frozenset()
        own_scope = Scope(
            self.inputs, self.all_steps, scope.visible, scope.loop_vars, own_outputs=own
        )
        if step.exit_when is not None:
            yield from self._check_condition(step.exit_when, own_scope, (*path, "exit_when"))
        for name, value in (step.exit_outputs or {}).items():
            if isinstance(value, str):
                yield from self._check_template(value, own_scope, (*path, "exit_outputs", name))
        for index, output in enumerate(step.outputs):
            if isinstance(output.value, str):
                yield from self._check_template(
                    output.value, scope, (*path, "outputs", index, "value")
                )
            if output.required_if:
                yield from self._check_condition(
                    output.required_if,
                    _sibling_scope(scope, step.outputs),
                    (*path, "outputs", index, "required_if"),
                )
        yield from self._check_step_type(step, path, scope)

    def _check_step_type(
        self, step: models.StepBase, path: PathTuple, scope: Scope
    ) -> Iterator[RawProblem]:
        if isinstance(step, models.AutomatedStep) and step.run is not None:
            yield from _check_run_path(step.run, (*path, "run"))
        elif isinstance(step, models.WebhookStep):
            yield from self._check_webhook(step.webhook, (*path, "webhook"), scope)
        elif isinstance(step, models.WaitStep):
            wait = step.wait
            if wait.until is not None:
                yield from self._check_condition(wait.until, scope, (*path, "wait", "until"))
            if wait.until_time is not None:
                yield from self._check_template(
                    wait.until_time, scope, (*path, "wait", "until_time")
                )
        elif isinstance(step, models.LoopStep):
            loop = step.loop
            if loop.for_each is not None:
                yield from self._check_reference_text(
                    loop.for_each, scope, (*path, "loop", "for_each")
                )
            # while / repeat_until are evaluated around the body, so they may read it.
            body_ids = frozenset(inner_step.id for inner_step in _walk(step.body))
            inner = Scope(
                self.inputs, self.all_steps, scope.visible | body_ids, scope.loop_vars | {loop.as_}
            )
            for key, text in (("while", loop.while_), ("repeat_until", loop.repeat_until)):
                if text is not None:
                    yield from self._check_condition(text, inner, (*path, "loop", key))
        elif isinstance(step, models.LlmStep):
            for key in ("prompt", "system"):
                text = getattr(step, key)
                if text is not None:
                    yield from _check_jinja(text, (*path, key))
            if step.prompt_file is not None:
                yield from _check_run_path(step.prompt_file, (*path, "prompt_file"))
        elif isinstance(step, models.NotificationStep):
            for key in ("subject", "body", "template"):
                text = getattr(step, key)
                if text is not None:
                    yield from _check_jinja(text, (*path, key))
            outbound = Scope(
                scope.inputs, scope.steps, scope.visible, scope.loop_vars, env_allowed=True
            )
            if step.url is not None:
                yield from self._check_template(step.url, outbound, (*path, "url"))
            recipients = (step.to,) if isinstance(step.to, str) else step.to or ()
            for index, recipient in enumerate(recipients):
                where = (*path, "to") if isinstance(step.to, str) else (*path, "to", index)
                yield from self._check_template(recipient, scope, where)
        elif isinstance(step, models.JudgmentStep) and step.judgment.prompt is not None:
            yield from _check_jinja(step.judgment.prompt, (*path, "judgment", "prompt"))

    def _check_webhook(
        self, webhook: models.WebhookConfig, path: PathTuple, scope: Scope
    ) -> Iterator[RawProblem]:
        outbound = Scope(
            scope.inputs,
            scope.steps,
            scope.visible,
            scope.loop_vars,
            env_allowed=True,
            callback_allowed=True,
        )
        yield from self._check_template(webhook.url, outbound, (*path, "url"))
        literal = webhook.url.strip()
        if not literal.startswith("${") and not literal.lower().startswith(("http://", "https://")):
            yield _problem(
                (*path, "url"), "invalid_url", "a webhook url must start with http:// or https://"
            )
        for name, value in webhook.headers.items():
            yield from self._check_template(value, outbound, (*path, "headers", name))
        for where, text in _strings_in(webhook.body, (*path, "body")):
            yield from self._check_template(text, outbound, where)
        for key in ("poll_timeout", "request_timeout"):
            text = getattr(webhook, key)
            if text is not None:
                yield from _check_duration(text, (*path, key))

    # -- references ------------------------------------------------------------------

    def _check_reference_text(
        self, text: str, scope: Scope, path: PathTuple
    ) -> Iterator[RawProblem]:
        try:
            reference = parse_reference(text.strip())
        except ExpressionError as error:
            yield _expression_problem(path, error)
            return
        yield from _check_reference(reference, scope, path)

    def _check_condition(self, text: str, scope: Scope, path: PathTuple) -> Iterator[RawProblem]:
        try:
            condition = parse_condition(text)
        except ExpressionError as error:
            yield _expression_problem(path, error)
            return
        for reference in condition.references():
            yield from _check_reference(reference, scope, path)

    def _check_template(self, text: str, scope: Scope, path: PathTuple) -> Iterator[RawProblem]:
        try:
            template = parse_template(text)
        except ExpressionError as error:
            yield _expression_problem(path, error)
            return
        for reference in template.references():
            yield from _check_reference(reference, scope, path)


def _check_reference(reference: Reference, scope: Scope, path: PathTuple) -> Iterator[RawProblem]:
    root = reference.root
    keys = _keys(reference)
    text = reference.text
    if scope.payload_allowed and root != "payload":
        yield _problem(
            path,
            "invalid_reference",
            f"'{text}': a trigger's input_mapping can only read the delivery, "
            "as ${payload.<path>}",
        )
        return
    if root in ("process", "inputs"):
        name_at = 2 if root == "process" else 1
        if root == "process" and (len(keys) < 2 or keys[1] != "inputs"):
            yield _problem(path, "invalid_reference", f"'{text}': use process.inputs.<name>")
            return
        if len(keys) > name_at and keys[name_at] not in scope.inputs:
            yield _problem(
                path, "unknown_input", f"'{text}': the process declares no input '{keys[name_at]}'"
            )
    elif root == "steps":
        yield from _check_step_reference(reference, keys, scope, path)
    elif root in ("trigger", "instance"):
        return
    elif root == "env":
        if not scope.env_allowed:
            yield _problem(
                path,
                "env_not_allowed",
                f"'{text}': environment variables may only be read in webhook urls, "
                "headers and bodies",
            )
    elif root == "loop":
        if len(keys) < 2 or keys[1] not in scope.loop_vars:
            known = ", ".join(sorted(scope.loop_vars)) or "none here"
            yield _problem(
                path,
                "unknown_loop_variable",
                f"'{text}': not a loop variable in scope (loop variables: {known})",
            )
    elif (root == "payload" and scope.payload_allowed) or (
        root == "callback_url" and scope.callback_allowed
    ):
        return
    elif root == "outputs" and scope.own_outputs is not None:
        if len(keys) > 1 and scope.own_outputs and keys[1] not in scope.own_outputs:
            yield _problem(path, "unknown_output", f"'{text}': this step declares no such output")
    elif scope.own_outputs is not None and len(keys) == len(reference.segments):
        if scope.own_outputs and root not in scope.own_outputs:
            yield _problem(path, "unknown_output", f"'{text}': no output of that name here")
    elif scope.env_allowed and root.isupper():
        return  # `${API_KEY}` in a webhook means env.API_KEY
    else:
        yield _problem(
            path,
            "invalid_reference",
            f"'{text}': a reference starts with process.inputs, steps, trigger, instance"
            + (", env" if scope.env_allowed else "")
            + (", loop" if scope.loop_vars else "")
            + (", payload" if scope.payload_allowed else ""),
        )


def _check_step_reference(
    reference: Reference, keys: list[str | None], scope: Scope, path: PathTuple
) -> Iterator[RawProblem]:
    text = reference.text
    step_id = keys[1] if len(keys) > 1 else None
    if step_id is None:
        yield _problem(path, "invalid_reference", f"'{text}': use steps.<id>.outputs.<name>")
        return
    target = scope.steps.get(step_id)
    if target is None:
        yield _problem(path, "unknown_step", f"'{text}': there is no step '{step_id}'")
        return
    if step_id not in scope.visible:
        yield _problem(
            path,
            "forward_reference",
            f"'{text}': step '{step_id}' has not run yet at this point; "
            "a step may only read steps that come before it",
        )
        return
    if len(keys) < 3 or keys[2] != "outputs":
        yield _problem(path, "invalid_reference", f"'{text}': use steps.{step_id}.outputs.<name>")
        return
    declared = target.declared_output_names()
    if len(keys) > 3 and declared is not None and keys[3] not in declared:
        listed = ", ".join(sorted(declared)) or "none"
        yield _problem(
            path,
            "unknown_output",
            f"'{text}': step '{step_id}' declares no output '{keys[3]}' (it declares: {listed})",
        )


def _keys(reference: Reference) -> list[str | None]:
    """The key names along a reference; None where the segment is an index or [*]."""
    return [getattr(segment, "name", None) for segment in reference.segments]


def _sibling_scope(scope: Scope, fields: Sequence[Field]) -> Scope:
    return Scope(
        scope.inputs,
        scope.steps,
        scope.visible,
        scope.loop_vars,
        own_outputs=frozenset(f.name for f in fields),
    )


def _check_duration(text: str, path: PathTuple) -> Generator[RawProblem, None, float | None]:
    """Yields a problem for a bad duration; returns the seconds when it parses."""
    try:
        return parse_duration(text)
    except InvalidDuration as error:
        yield _problem(path, "invalid_duration", str(error))
        return None


def _check_timezone(name: str, path: PathTuple) -> Iterator[RawProblem]:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        yield _problem(path, "invalid_timezone", f"'{name[:60]}' is not a known IANA time zone")


def _check_run_path(text: str, path: PathTuple) -> Iterator[RawProblem]:
    candidate = PurePosixPath(text.strip())
    if not text.strip():
        yield _problem(path, "invalid_run_path", "the path may not be empty")
    elif candidate.is_absolute() or text.strip().startswith("~"):
        yield _problem(
            path,
            "invalid_run_path",
            f"'{text[:80]}' is absolute; paths resolve under the process directory",
        )
    elif ".." in candidate.parts:
        yield _problem(
            path, "invalid_run_path", f"'{text[:80]}' leaves the process directory ('..')"
        )
    elif "\x00" in text:
        yield _problem(path, "invalid_run_path", "the path contains a NUL character")


def _check_jinja(text: str, path: PathTuple) -> Iterator[RawProblem]:
    try:
        _JINJA.parse(text)
    except jinja2.TemplateSyntaxError as error:
        yield _problem(path, "invalid_template", f"template syntax error: {error.message}")
    except RecursionError:
        yield _problem(path, "invalid_template", "the template nests too deeply")


def _expression_problem(path: PathTuple, error: ExpressionError) -> RawProblem:
    return _problem(path, "invalid_expression", str(error))


def _strings_in(value: Any, path: PathTuple) -> Iterator[tuple[PathTuple, str]]:
    stack: list[tuple[PathTuple, Any]] = [(path, value)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, str):
            yield where, current
        elif isinstance(current, dict):
            stack.extend(((*where, str(k)), v) for k, v in current.items())
        elif isinstance(current, list | tuple):
            stack.extend(((*where, i), v) for i, v in enumerate(current))


def _walk(steps: Iterable[models.StepBase]) -> Iterator[models.StepBase]:
    for step in steps:
        yield step
        if isinstance(step, models.LoopStep):
            yield from _walk(step.body)


def _loop_depths(
    steps: Sequence[models.StepBase], path: PathTuple, depth: int
) -> Iterator[tuple[PathTuple, int]]:
    for index, step in enumerate(steps):
        if isinstance(step, models.LoopStep):
            yield (*path, index), depth
            if depth <= MAX_LOOP_DEPTH:
                yield from _loop_depths(step.body, (*path, index, "body"), depth + 1)


def _problem(path: PathTuple, code: str, message: str) -> RawProblem:
    return RawProblem(path, code, message)
