"""The typed, immutable model of a process definition.

These pydantic models are the one description of the format: the loader validates
against them, the JSON Schema is generated from them, and the engine reads them.
Cross-field rules (references, ordering, durations) live in ``checks.py``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)
from pydantic import Field as PydanticField

from opensop.definition.fields import Field
from opensop.definition.frozen import FrozenMap
from opensop.definition.text import Text

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
MAX_SLUG_LENGTH = 128

Slug = Annotated[str, PydanticField(pattern=SLUG_PATTERN, max_length=MAX_SLUG_LENGTH)]
# Text written where a string is expected keeps the author's spelling (1.10 stays "1.10").
DurationText = Text
Number = StrictInt | StrictFloat  # booleans and numeric strings are not numbers


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StepType(StrEnum):
    FORM = "form"  # a person or agent submits the declared outputs
    APPROVAL = "approval"  # a person approves or rejects
    JUDGMENT = "judgment"  # an agent decides when allowed, else a person
    AUTOMATED = "automated"  # a script the engine runs, or an external worker
    LLM = "llm"  # a model call with a validated output
    WEBHOOK = "webhook"  # an outbound HTTP call, optionally awaiting a callback
    SUBPROCESS = "subprocess"  # a child instance of another process
    NOTIFICATION = "notification"  # email, webhook or log delivery
    WAIT = "wait"  # a durable timer
    LOOP = "loop"  # body steps repeated per item or while a condition holds
    SHELL = "shell"  # local-profile only: an inline shell command
    NOOP = "noop"  # local-profile only: does nothing


LOCAL_ONLY_STEP_TYPES = frozenset({StepType.SHELL, StepType.NOOP})


class OnTimeout(StrEnum):
    FAIL = "fail"
    SKIP = "skip"
    ESCALATE = "escalate"
    NOTIFY_AND_WAIT = "notify-and-wait"


class Backoff(StrEnum):
    EXPONENTIAL = "exponential"
    FIXED = "fixed"


class RetryPolicy(Frozen):
    max: StrictInt = PydanticField(default=0, ge=0, le=100)
    backoff: Backoff = Backoff.EXPONENTIAL
    initial: DurationText = "1s"
    max_delay: DurationText | None = None


class StepInput(Frozen):
    """One input of a step: a reference (`from`), a literal/template `value`, or both
    absent with a `default`. The map form `name: "${...}"` normalizes to `value`."""

    name: Annotated[str, PydanticField(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=128)]
    from_: Text | None = PydanticField(default=None, alias="from")
    value: Any = None
    default: Any = None
    description: Text | None = None
    type: Text | None = None
    required: StrictBool = False


def _normalize_step_inputs(value: Any) -> Any:
    """Accept both the list form and the map form of step inputs."""
    if isinstance(value, dict):
        return [{"name": str(key), "value": item} for key, item in value.items()]
    return value


StepInputs = Annotated[
    tuple[StepInput, ...],
    BeforeValidator(
        _normalize_step_inputs, json_schema_input_type=list[StepInput] | dict[str, Any]
    ),
]


class Sla(Frozen):
    target: DurationText | None = None
    warning: DurationText | None = None


class StepBase(Frozen):
    id: Slug
    name: Text | None = None
    description: Text | None = None
    inputs: StepInputs = ()
    outputs: tuple[Field, ...] = ()
    condition: Text | None = None
    timeout: DurationText | None = None
    on_timeout: OnTimeout | None = None
    retry: RetryPolicy | None = None
    continue_on_error: StrictBool = False
    exit_when: Text | None = None
    exit_outputs: FrozenMap[Any] | None = None
    executor: Literal["internal", "external"] | None = None
    assignee: Text | None = None
    role: Text | None = None
    tags: tuple[Text, ...] = ()
    sla: Sla | None = None

    @property
    def step_type(self) -> StepType:
        return StepType(getattr(self, "type"))  # noqa: B009 - every subclass declares it

    def declared_output_names(self) -> frozenset[str] | None:
        """Output names others may reference; None means "unknown until run time"."""
        return frozenset(field.name for field in self.outputs)


class FormStep(StepBase):
    type: Literal["form"]
    fields: tuple[Field, ...] = ()  # display-only extra fields some files declare


class ApprovalStep(StepBase):
    type: Literal["approval"]
    approvers: tuple[Text, ...] = ()

    def declared_output_names(self) -> frozenset[str]:
        return frozenset({"approved", "notes"} | {field.name for field in self.outputs})


class JudgmentConfig(Frozen):
    allow_agent: StrictBool = False
    require_human_review: StrictBool = False
    confidence_threshold: Number = PydanticField(default=0.8, ge=0.0, le=1.0)
    escalate_to: Text | None = None
    escalation: Text | None = None
    model: Text | None = None
    prompt: Text | None = None


class JudgmentStep(StepBase):
    type: Literal["judgment"]
    judgment: JudgmentConfig = JudgmentConfig()


class AutomatedStep(StepBase):
    type: Literal["automated"]
    run: Text | None = None
    validation: Literal["lenient", "strict"] = "lenient"


class LlmStep(StepBase):
    type: Literal["llm"]
    model: Text | None = None
    provider: Text | None = None
    prompt: Text | None = None
    prompt_file: Text | None = None
    system: Text | None = None
    expected_output_schema: FrozenMap[Any] | None = None
    max_retries: StrictInt = PydanticField(default=2, ge=0, le=10)
    temperature: Number | None = PydanticField(default=None, ge=0.0, le=2.0)
    max_tokens: StrictInt | None = PydanticField(default=None, ge=1)
    tools: tuple[Any, ...] = ()

    @model_validator(mode="after")
    def _one_prompt(self) -> LlmStep:
        if self.prompt is None and self.prompt_file is None:
            raise ValueError("an llm step needs `prompt` or `prompt_file`")
        return self


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


HttpMethod = Annotated[
    Literal["GET", "POST", "PUT", "PATCH", "DELETE"],
    BeforeValidator(
        _upper,
        json_schema_input_type=Literal[
            "GET", "POST", "PUT", "PATCH", "DELETE", "get", "post", "put", "patch", "delete"
        ],
    ),
]


class WebhookConfig(Frozen):
    method: HttpMethod = "POST"
    url: Text
    headers: FrozenMap[Text] = PydanticField(default_factory=dict)
    body: Any = None
    response_mode: Literal["sync", "callback"] = "sync"
    callback_path: Text | None = None
    poll_timeout: DurationText | None = None
    request_timeout: DurationText | None = None


class WebhookStep(StepBase):
    type: Literal["webhook"]
    webhook: WebhookConfig


class SubprocessStep(StepBase):
    type: Literal["subprocess"]
    process: Slug
    version: Text | None = None

    def declared_output_names(self) -> frozenset[str] | None:
        # The child's outputs are known only once it is registered and run.
        return super().declared_output_names() or None


class NotificationStep(StepBase):
    type: Literal["notification"]
    channel: Literal["email", "webhook", "log", "slack"] = "log"
    to: Text | tuple[Text, ...] | None = None
    subject: Text | None = None
    template: Text | None = None
    body: Text | None = None
    url: Text | None = None


class WaitConfig(Frozen):
    seconds: Number | None = PydanticField(default=None, ge=0)
    until: Text | None = None
    until_time: Text | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> WaitConfig:
        given = [k for k in ("seconds", "until", "until_time") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("wait takes exactly one of `seconds`, `until` or `until_time`")
        return self


class WaitStep(StepBase):
    type: Literal["wait"]
    wait: WaitConfig


class LoopConfig(Frozen):
    for_each: Text | None = None
    while_: Text | None = PydanticField(default=None, alias="while")
    repeat_until: Text | None = None
    as_: Slug = PydanticField(default="item", alias="as")
    max_iterations: StrictInt = PydanticField(default=100, ge=1, le=10_000)
    aggregate: FrozenMap[Literal["concat", "collect", "last", "sum", "count"]] = PydanticField(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> LoopConfig:
        given = [v for v in (self.for_each, self.while_, self.repeat_until) if v is not None]
        if len(given) != 1:
            raise ValueError("loop takes exactly one of `for_each`, `while` or `repeat_until`")
        return self


class LoopStep(StepBase):
    type: Literal["loop"]
    loop: LoopConfig
    body: tuple[Step, ...] = PydanticField(min_length=1)


class ShellStep(StepBase):
    type: Literal["shell"]
    run: Text


class NoopStep(StepBase):
    type: Literal["noop"]


Step = Annotated[
    FormStep
    | ApprovalStep
    | JudgmentStep
    | AutomatedStep
    | LlmStep
    | WebhookStep
    | SubprocessStep
    | NotificationStep
    | WaitStep
    | LoopStep
    | ShellStep
    | NoopStep,
    PydanticField(discriminator="type"),
]

LoopStep.model_rebuild()


class HmacAuth(Frozen):
    scheme: Literal["hmac-sha256"] = "hmac-sha256"
    provider: Literal["github", "stripe", "typeform", "calcom", "hubspot"] | None = None
    secret_env: Annotated[str, PydanticField(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    header: Text | None = None
    encoding: Literal["hex", "base64"] = "hex"
    prefix: Text = ""
    tolerance_seconds: StrictInt = PydanticField(default=300, ge=1, le=86_400)


class ApiTrigger(Frozen):
    type: Literal["api"]


class ManualTrigger(Frozen):
    type: Literal["manual"]


class WebhookTrigger(Frozen):
    type: Literal["webhook"]
    auth: HmacAuth
    input_mapping: FrozenMap[Any] = PydanticField(default_factory=dict)


class ScheduleTrigger(Frozen):
    type: Literal["schedule"]
    cron: Text
    timezone: Text = "UTC"
    inputs: FrozenMap[Any] = PydanticField(default_factory=dict)
    catch_up: Literal["once", "skip"] = "once"


class IntervalTrigger(Frozen):
    type: Literal["interval"]
    interval: DurationText
    inputs: FrozenMap[Any] = PydanticField(default_factory=dict)
    catch_up: Literal["once", "skip"] = "once"


Trigger = Annotated[
    ApiTrigger | ManualTrigger | WebhookTrigger | ScheduleTrigger | IntervalTrigger,
    PydanticField(discriminator="type"),
]


class ErrorNotify(Frozen):
    channel: Text
    target: Text | None = None
    to: Text | None = None


class OnError(Frozen):
    notify: ErrorNotify | None = None
    retry_policy: RetryPolicy | None = None


class Access(Frozen):
    start: tuple[Text, ...] = ()
    view: tuple[Text, ...] = ()
    advance: tuple[Text, ...] = ()
    admin: tuple[Text, ...] = ()
    cancel: tuple[Text, ...] = ()


class Recipe(Frozen):
    """Distribution metadata; ignored by execution."""

    source: Text | None = None
    install: Text | None = None
    tags: tuple[Text, ...] = ()


class ProcessDefinition(Frozen):
    """A validated process. ``opensop`` is the format version the file declared."""

    opensop: Text = "0.1"
    name: Slug
    version: Text = PydanticField(min_length=1, max_length=64)
    description: Text | None = None
    owner: Text | None = None
    tags: tuple[Text, ...] = ()
    trigger: Trigger = ApiTrigger(type="api")
    inputs: tuple[Field, ...] = ()
    outputs: tuple[Field, ...] = ()
    steps: tuple[Step, ...] = PydanticField(min_length=1)
    on_error: OnError | None = None
    sla: Sla | None = None
    access: Access | None = None
    replaces: Text | None = None
    recipe: Recipe | None = None
    metadata: FrozenMap[Any] | None = None

    def step(self, step_id: str) -> StepBase:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def to_json(self) -> dict[str, Any]:
        """The normalized definition as JSON-ready data (what `GET /schema` serves)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


PROCESS_KEYS = frozenset(
    field.alias or name for name, field in ProcessDefinition.model_fields.items()
) - {"opensop"}
