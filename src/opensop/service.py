"""Use cases: the only door the API, the CLI and background work go through.

Each use case is one database transaction: it loads what it needs, asks the pure engine
what happens, and writes the new state together with its event rows. On SQLite a write
transaction takes the database write lock at BEGIN; on PostgreSQL the instance row is
locked with SELECT ... FOR UPDATE. Either way, two actions on one instance are serialized.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from ulid import ULID

from opensop import auth, capabilities, reports
from opensop.auth import Principal, Scope
from opensop.clock import Clock
from opensop.definition import models
from opensop.definition.expressions import parse_condition
from opensop.definition.fields import Field, FieldType
from opensop.definition.loader import Profile, load_definition
from opensop.definition.problems import DefinitionError
from opensop.definition.values import apply_defaults, validate_values
from opensop.engine import machine
from opensop.engine.records import InstanceRun, StepRun
from opensop.engine.states import InstanceState
from opensop.errors import (
    Forbidden,
    IdempotencyConflict,
    InvalidDefinition,
    InvalidInputs,
    NotFound,
    Unauthorized,
    VersionConflict,
)
from opensop.store import instances as instance_store
from opensop.store import jobs as job_store
from opensop.store import leases as lease_store
from opensop.store import metrics as metric_store
from opensop.store import processes as process_store
from opensop.store import tokens as token_store
from opensop.store.database import Database
from opensop.store.instances import InstanceSummary, PendingWork, StoredInstance
from opensop.store.processes import ProcessRecord
from opensop.work import Work, schedule_tick

_DEFINITION_CACHE_SIZE = 1024
LATEST_VERSION_TTL = 1.0  # seconds a start may use a remembered "latest version"
# last_used_at is advisory: writing it on every request would turn reads into writes.
_TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class Registration:
    process: ProcessRecord
    definition: models.ProcessDefinition
    created: bool


@dataclass(frozen=True)
class ProcessListing:
    """A process's latest version, as discovery shows it."""

    record: ProcessRecord
    definition: models.ProcessDefinition
    next_run_at: datetime | None  # schedule and interval triggers only


@dataclass(frozen=True)
class InstanceView:
    """An instance with the definition it runs on (for step names and links)."""

    run: InstanceRun
    definition: models.ProcessDefinition


@dataclass(frozen=True)
class Started:
    view: InstanceView
    created: bool


@dataclass(frozen=True)
class Submitted:
    step: StepRun
    view: InstanceView
    queued_jobs: bool = False


@dataclass(frozen=True)
class NewToken:
    record: token_store.TokenRecord
    secret: str


class Service:
    def __init__(self, db: Database, clock: Clock, *, process_dir: Path | None = None) -> None:
        self.db = db
        self.clock = clock
        self.process_dir = process_dir
        self.work = Work(self, process_dir)
        self._definitions: OrderedDict[int, models.ProcessDefinition] = OrderedDict()
        self._touched: dict[str, datetime] = {}
        self._latest_ids: dict[tuple[str, str], tuple[int, float]] = {}

    def store_answers(self) -> bool:
        try:
            with self.db.read() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    # -- tokens ------------------------------------------------------------------------

    def authenticate(self, secret: str | None) -> Principal:
        if not secret or not auth.plausible_token(secret):
            raise Unauthorized()
        digest = auth.hash_secret(secret)
        now = self.clock.now()
        with self.db.read() as conn:
            record = token_store.find_live_token(conn, digest)
        if record is None:
            raise Unauthorized()
        last = self._touched.get(record.id)
        if last is None or now - last > _TOKEN_TOUCH_INTERVAL:
            self._touched[record.id] = now
            # Advisory: never wait for the write lock (nor fail) because of it.
            self.db.write_soon(lambda conn: token_store.touch_token(conn, record.id, now))
        return Principal(
            record.id, record.workspace_id, record.name, frozenset(Scope(s) for s in record.scopes)
        )

    def create_token(self, workspace_id: str, name: str, scopes: list[str] | None) -> NewToken:
        """A new token with a fresh secret, shown to the caller once."""
        try:
            scope_names = auth.parse_scopes(scopes)
        except ValueError as error:
            raise InvalidInputs(
                str(error),
                [{"field": "scopes", "code": "not_in_enum", "expected": [s.value for s in Scope]}],
            ) from None
        secret = auth.new_secret()
        now = self.clock.now()

        def insert(conn: sa.Connection) -> token_store.TokenRecord:
            token_store.ensure_workspace(conn, workspace_id, now)
            return self._insert_token(conn, workspace_id, name, secret, scope_names, now)

        return NewToken(self.db.run_write(insert), secret)

    def bootstrap_token(self, workspace_id: str, secret: str) -> token_store.TokenRecord:
        """Make an operator-chosen secret (OPENSOP_API_TOKEN) a live admin token.

        Idempotent across restarts; a secret that was revoked stays revoked.
        """
        if not auth.plausible_token(secret):
            raise auth.BootstrapTokenRefused(
                "OPENSOP_API_TOKEN must start with 'sk_' and be 11 to 200 ASCII characters"
            )
        digest = auth.hash_secret(secret)
        now = self.clock.now()

        def ensure(conn: sa.Connection) -> token_store.TokenRecord:
            token_store.ensure_workspace(conn, workspace_id, now)
            existing = token_store.find_token(conn, digest)
            if existing is not None and existing.revoked_at is not None:
                raise auth.BootstrapTokenRevoked(
                    "OPENSOP_API_TOKEN was revoked; set a new secret (revocation is permanent)"
                )
            if existing is not None:
                return existing
            return self._insert_token(
                conn, workspace_id, "bootstrap", secret, [Scope.ADMIN.value], now
            )

        return self.db.run_write(ensure)

    def _insert_token(
        self,
        conn: sa.Connection,
        workspace_id: str,
        name: str,
        secret: str,
        scopes: list[str],
        now: datetime,
    ) -> token_store.TokenRecord:
        return token_store.insert_token(
            conn,
            token_id=str(ULID()),
            workspace_id=workspace_id,
            name=name,
            prefix=secret[: auth.DISPLAY_PREFIX_LENGTH],
            secret_hash=auth.hash_secret(secret),
            scopes=scopes,
            now=now,
        )

    def list_tokens(self, principal: Principal) -> list[token_store.TokenRecord]:
        require(principal, Scope.ADMIN)
        with self.db.read() as conn:
            return token_store.list_tokens(conn, principal.workspace_id)

    def revoke_token(self, principal: Principal, token_id: str) -> None:
        require(principal, Scope.ADMIN)
        now = self.clock.now()

        def revoke(conn: sa.Connection) -> None:
            if not token_store.revoke_token(conn, principal.workspace_id, token_id, now):
                raise NotFound("No token with that id in this workspace.")

        self.db.run_write(revoke)

    # -- processes ---------------------------------------------------------------------

    def register(
        self,
        principal: Principal,
        data: bytes,
        *,
        filename: str = "<upload>",
        base_dir: Path | None = None,
    ) -> Registration:
        require(principal, Scope.REGISTER)
        return self.register_in(principal.workspace_id, data, filename=filename, base_dir=base_dir)

    def register_in(
        self, workspace_id: str, data: bytes, *, filename: str, base_dir: Path | None
    ) -> Registration:
        try:
            definition = load_definition(data, filename=filename, profile=Profile.SERVER)
        except DefinitionError as error:
            raise InvalidDefinition(
                f"The process definition is invalid: {error}",
                [problem.to_json() for problem in error.problems],
            ) from None
        script_root = base_dir or self.process_dir
        refused = capabilities.unsupported_steps(definition, script_root)
        if refused:
            raise InvalidDefinition(
                f"The process definition is invalid: {refused[0]['message']}", refused
            )
        normalized = definition.to_json()
        content_hash = hashlib.sha256(
            json.dumps(normalized, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        now = self.clock.now()

        def publish(conn: sa.Connection) -> Registration:
            token_store.ensure_workspace(conn, workspace_id, now)
            existing = process_store.find_version(
                conn, workspace_id, definition.name, definition.version
            )
            if existing is not None:
                return _republished(existing, definition, content_hash)
            record = process_store.insert_process(
                conn,
                workspace_id=workspace_id,
                name=definition.name,
                version=definition.version,
                definition=normalized,
                source=data.decode("utf-8", errors="replace"),
                content_hash=content_hash,
                base_dir=str(script_root) if script_root else None,
                now=now,
            )
            if isinstance(definition.trigger, models.ScheduleTrigger | models.IntervalTrigger):
                tick = schedule_tick(workspace_id, record.id, definition, now, now)
                job_store.enqueue(conn, job_store.job_rows(workspace_id, None, [tick], now))
            return Registration(record, definition, created=True)

        try:
            registration = self.db.run_write(publish)
        except sa.exc.IntegrityError:
            # Two registrations of one version raced (PostgreSQL): compare with the winner.
            with self.db.read() as conn:
                existing = process_store.find_version(
                    conn, workspace_id, definition.name, definition.version
                )
            if existing is None:
                raise
            return _republished(existing, definition, content_hash)
        if registration.created:
            self._remember(registration.process.id, definition)
            self._latest_ids.pop((workspace_id, definition.name), None)
            self.db.after_commit(self.work.jobs_queued)
        return registration

    def list_processes(self, principal: Principal) -> list[ProcessListing]:
        require(principal, Scope.VIEW)
        listings: list[ProcessListing] = []
        with self.db.read() as conn:
            for record in process_store.list_latest(conn, principal.workspace_id):
                definition = self._definition_of(record)
                listings.append(
                    ProcessListing(record, definition, self._next_run(conn, record, definition))
                )
        return listings

    def _next_run(
        self, conn: sa.Connection, record: ProcessRecord, definition: models.ProcessDefinition
    ) -> datetime | None:
        if not isinstance(definition.trigger, models.ScheduleTrigger | models.IntervalTrigger):
            return None
        return job_store.queued_schedule_tick(conn, record.workspace_id, record.name)

    def process_definition(
        self, principal: Principal, name: str, version: str | None
    ) -> tuple[ProcessRecord, models.ProcessDefinition]:
        require(principal, Scope.VIEW)
        with self.db.read() as conn:
            if version is None:
                record = process_store.find_latest(conn, principal.workspace_id, name)
            else:
                record = process_store.find_version(conn, principal.workspace_id, name, version)
        if record is None:
            what = f"version {version} of " if version else ""
            raise NotFound(f"No published {what[:80]}process named '{name[:64]}'.")
        return record, self._definition_of(record)

    # -- instances ---------------------------------------------------------------------

    def start(
        self,
        principal: Principal,
        name: str,
        body: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Started:
        require(principal, Scope.START)
        inputs = body.get("inputs")
        metadata = body.get("metadata")
        if not isinstance(inputs, dict):
            raise InvalidInputs(
                "`inputs` must be a JSON object.",
                [
                    {
                        "field": "inputs",
                        "code": "required" if inputs is None else "type_mismatch",
                        "expected": "object",
                    }
                ],
            )
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInputs(
                "`metadata` must be a JSON object.",
                [{"field": "metadata", "code": "type_mismatch", "expected": "object"}],
            )
        request_hash = _request_hash(name, body) if idempotency_key else None
        now = self.clock.now()
        process_id, definition = self._latest(principal.workspace_id, name)
        filled = apply_defaults(definition.inputs, inputs)
        _raise_on_violations(definition.inputs, filled, "inputs")
        run = machine.new_instance(
            instance_id=str(ULID.from_datetime(now)),
            workspace_id=principal.workspace_id,
            definition=definition,
            inputs=filled,
            metadata=metadata,
            now=now,
        )
        transition = machine.start(run, definition, now, principal.actor)
        rows = instance_store.new_instance_rows(
            transition,
            process_id=process_id,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            now=now,
        )

        def insert(conn: sa.Connection) -> Started | None:
            if idempotency_key is not None:
                replay = self._replay(conn, principal, idempotency_key, request_hash)
                if replay is not None:
                    return replay
            instance_store.insert_instance(conn, rows)
            return None

        try:
            replay = self.db.run_write(insert)
        except sa.exc.IntegrityError:
            # Two starts with one Idempotency-Key raced (PostgreSQL); the winner's row
            # is committed now, so answer as a repeat of it.
            if idempotency_key is None:
                raise
            with self.db.read() as conn:
                replay = self._replay(conn, principal, idempotency_key, request_hash)
            if replay is None:
                raise
        if replay is not None:
            return replay
        if transition.jobs:
            self.db.after_commit(self.work.jobs_queued)
        return Started(InstanceView(transition.instance, definition), created=True)

    def _replay(
        self, conn: sa.Connection, principal: Principal, key: str, request_hash: str | None
    ) -> Started | None:
        """The instance an earlier start with this Idempotency-Key created, if any."""
        existing_id = instance_store.find_by_idempotency_key(conn, principal.workspace_id, key)
        if existing_id is None:
            return None
        stored = instance_store.load_instance(conn, principal.workspace_id, existing_id)
        assert stored is not None
        if stored.request_hash != request_hash:
            raise IdempotencyConflict()
        definition = self.definition_by_id(conn, stored.process_id)
        return Started(InstanceView(stored.run, definition), created=False)

    def get_instance(self, principal: Principal, name: str, instance_id: str) -> InstanceView:
        require(principal, Scope.VIEW)
        with self.db.read() as conn:
            stored = self.load_for(conn, principal, name, instance_id)
            return InstanceView(stored.run, self.definition_by_id(conn, stored.process_id))

    def submit(
        self,
        principal: Principal,
        name: str,
        instance_id: str,
        step_id: str,
        body: Mapping[str, Any],
    ) -> Submitted:
        require(principal, Scope.ADVANCE)
        outputs = body.get("outputs", {})
        decided_by = body.get("decided_by")
        confidence = body.get("confidence")
        _check_submission_shape(outputs, decided_by, confidence)
        now = self.clock.now()

        def complete(conn: sa.Connection) -> Submitted:
            stored = self.waiting_step(
                conn, principal, name, instance_id, step_id, body.get("lease_token"), now
            )
            run = stored.run
            definition = self.definition_by_id(conn, stored.process_id)
            step = definition.step(step_id)
            _raise_on_violations(submission_fields(step), outputs, "outputs")
            transition = machine.submit(
                run,
                definition,
                step_id,
                dict(outputs),
                decided_by=decided_by or principal.actor,
                confidence=float(confidence) if confidence is not None else None,
                now=now,
                actor=principal.actor,
            )
            instance_store.save_transition(conn, stored, transition, now)
            view = InstanceView(transition.instance, definition)
            return Submitted(transition.instance.steps[step_id], view, bool(transition.jobs))

        submitted = self.db.run_write(complete)
        if submitted.queued_jobs:
            self.db.after_commit(self.work.jobs_queued)
        return submitted

    def cancel(
        self, principal: Principal, name: str, instance_id: str, reason: str | None
    ) -> InstanceView:
        require(principal, Scope.CANCEL)
        now = self.clock.now()

        def stop(conn: sa.Connection) -> InstanceView:
            stored = self.load_for(conn, principal, name, instance_id, for_update=True)
            transition = machine.cancel(stored.run, reason, now, principal.actor)
            instance_store.save_transition(conn, stored, transition, now)
            return InstanceView(transition.instance, self.definition_by_id(conn, stored.process_id))

        return self.db.run_write(stop)

    def list_instances(
        self,
        principal: Principal,
        *,
        process_name: str | None,
        state: InstanceState | None,
        limit: int,
        offset: int,
        after: str | None,
    ) -> tuple[list[InstanceSummary], int]:
        require(principal, Scope.VIEW)
        with self.db.read() as conn:
            return instance_store.list_instances(
                conn,
                principal.workspace_id,
                process_name=process_name,
                state=state.value if state else None,
                limit=limit,
                offset=offset,
                before_id=after,
            )

    def pending_steps(self, principal: Principal, limit: int = 500) -> list[PendingWork]:
        require(principal, Scope.VIEW)
        now = self.clock.now()
        with self.db.read() as conn:
            rows = lease_store.pending(conn, principal.workspace_id, now, limit)
        return [PendingWork(*row) for row in rows]

    def instance_events(
        self, principal: Principal, name: str, instance_id: str
    ) -> list[dict[str, Any]]:
        require(principal, Scope.VIEW)
        with self.db.read() as conn:
            self.load_for(conn, principal, name, instance_id)
            return instance_store.instance_events(conn, instance_id)

    # -- metrics and status ------------------------------------------------------------

    def metrics(
        self, principal: Principal, *, window_seconds: float, process_name: str | None
    ) -> dict[str, Any]:
        require(principal, Scope.VIEW)
        now = self.clock.now()
        since = now - timedelta(seconds=window_seconds)
        workspace = principal.workspace_id
        with self.db.read() as conn:
            return reports.metrics_report(
                window_seconds=window_seconds,
                counts=metric_store.process_counts(conn, workspace, since, process_name),
                durations=metric_store.completed_durations(conn, workspace, since, process_name),
                step_health=metric_store.step_counts(conn, workspace, since, process_name),
                step_stats=metric_store.step_stats(conn, workspace, since, process_name),
                human_waiting=metric_store.waiting_human_steps(conn, workspace, process_name),
                now=now,
            )

    def process_status(self, principal: Principal) -> list[dict[str, Any]]:
        require(principal, Scope.VIEW)
        rows: list[dict[str, Any]] = []
        with self.db.read() as conn:
            for record in process_store.list_latest(conn, principal.workspace_id):
                activity = metric_store.process_activity(conn, principal.workspace_id, record.name)
                definition = self._definition_of(record)
                next_run = self._next_run(conn, record, definition)
                rows.append(
                    reports.status_row(
                        definition, activity, _iso(activity.last_finished_at), _iso(next_run)
                    )
                )
        return rows

    # -- helpers -----------------------------------------------------------------------

    def waiting_step(
        self,
        conn: sa.Connection,
        principal: Principal,
        name: str,
        instance_id: str,
        step_id: str,
        lease_token: Any,
        now: datetime,
    ) -> StoredInstance:
        """The instance, locked, whose step ``step_id`` waits for a submission that the
        caller (holding ``lease_token`` when the step is leased) may make."""
        stored = self.load_for(conn, principal, name, instance_id, for_update=True)
        step_run = stored.run.steps.get(step_id)
        if step_run is None:
            raise NotFound(f"Instance {instance_id} has no step '{step_id[:128]}'.")
        machine.ensure_submittable(stored.run, step_run)
        self.work.check_lease(stored, step_id, lease_token, now)
        return stored

    def load_for(
        self,
        conn: sa.Connection,
        principal: Principal,
        name: str,
        instance_id: str,
        *,
        for_update: bool = False,
    ) -> StoredInstance:
        stored = instance_store.load_instance(
            conn, principal.workspace_id, instance_id, for_update=for_update
        )
        if stored is None or stored.run.process_name != name:
            raise NotFound(f"No instance {instance_id[:40]} of process '{name[:64]}'.")
        return stored

    def _latest(self, workspace_id: str, name: str) -> tuple[int, models.ProcessDefinition]:
        """The latest published version, remembered briefly: every start asks for it.

        Registering through this service forgets it at once; a version registered through
        another server process becomes the latest here within LATEST_VERSION_TTL seconds.
        """
        key = (workspace_id, name)
        remembered = self._latest_ids.get(key)
        now = time.monotonic()
        if remembered is None or now - remembered[1] > LATEST_VERSION_TTL:
            with self.db.read() as conn:
                process_id = process_store.find_latest_id(conn, workspace_id, name)
                if process_id is None:
                    raise NotFound(f"No published process named '{name[:64]}'.")
                definition = self.definition_by_id(conn, process_id)
            self._latest_ids[key] = (process_id, now)
            return process_id, definition
        process_id = remembered[0]
        cached = self._definitions.get(process_id)
        if cached is None:
            with self.db.read() as conn:
                cached = self.definition_by_id(conn, process_id)
        return process_id, cached

    def _definition_of(self, record: ProcessRecord) -> models.ProcessDefinition:
        cached = self._definitions.get(record.id)
        if cached is None:
            cached = models.ProcessDefinition.model_validate(record.definition)
            self._remember(record.id, cached)
        return cached

    def definition_by_id(self, conn: sa.Connection, process_id: int) -> models.ProcessDefinition:
        cached = self._definitions.get(process_id)
        if cached is not None:
            return cached
        return self._definition_of(process_store.get_by_id(conn, process_id))

    def _remember(self, process_id: int, definition: models.ProcessDefinition) -> None:
        # Published versions are immutable, so a cached definition never goes stale.
        self._definitions[process_id] = definition
        while len(self._definitions) > _DEFINITION_CACHE_SIZE:
            self._definitions.popitem(last=False)


def _republished(
    existing: ProcessRecord, definition: models.ProcessDefinition, content_hash: str
) -> Registration:
    """Publishing a version again: a no-op when identical, a conflict otherwise."""
    if existing.content_hash != content_hash:
        raise VersionConflict(
            f"{definition.name} {definition.version} is already published with "
            "different content; publish it under a new version."
        )
    return Registration(existing, definition, created=False)


def require(principal: Principal, scope: Scope) -> None:
    if not principal.allows(scope):
        raise Forbidden(f"This token lacks the '{scope}' scope.")


APPROVAL_FIELDS = (
    Field(name="approved", type=FieldType.BOOLEAN, required=True),
    Field(name="notes", type=FieldType.STRING),
)


def submission_fields(step: models.StepBase) -> tuple[Field, ...]:
    """What a submission to this step must look like: its outputs (plus approval's own)."""
    if isinstance(step, models.ApprovalStep):
        declared = {field.name for field in step.outputs}
        return tuple(f for f in APPROVAL_FIELDS if f.name not in declared) + step.outputs
    return step.outputs


def _required_if(expression: str, values: Mapping[str, Any]) -> bool:
    return parse_condition(expression).evaluate({"values": dict(values)}, bare_root=("values",))


def _raise_on_violations(fields: tuple[Field, ...], data: Any, what: str) -> None:
    violations = validate_values(fields, data, required_if=_required_if)
    if violations:
        summary = "; ".join(v.message for v in violations[:3])
        more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
        raise InvalidInputs(
            f"The {what} failed validation: {summary}{more}",
            [violation.to_json() for violation in violations],
        )


def _check_submission_shape(outputs: Any, decided_by: Any, confidence: Any) -> None:
    details: list[dict[str, Any]] = []
    if not isinstance(outputs, dict):
        details.append(
            {
                "field": "outputs",
                "code": "type_mismatch",
                "expected": "object",
                "message": "outputs must be a JSON object",
            }
        )
    if decided_by is not None and (not isinstance(decided_by, str) or len(decided_by) > 255):
        details.append(
            {
                "field": "decided_by",
                "code": "type_mismatch",
                "expected": "string",
                "message": "decided_by must be a string of at most 255 characters",
            }
        )
    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not 0 <= confidence <= 1  # compared as is: float() overflows on huge ints
    ):
        details.append(
            {
                "field": "confidence",
                "code": "type_mismatch",
                "expected": "number 0-1",
                "message": "confidence must be a number between 0 and 1",
            }
        )
    if details:
        raise InvalidInputs("The submission failed validation.", details)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def _request_hash(process_name: str, body: Mapping[str, Any]) -> str:
    """What an Idempotency-Key promises: the same process and the same body."""
    request = {"process": process_name, "body": body}
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
