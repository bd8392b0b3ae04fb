"""Use cases of background work: job runners and external workers.

Job runners claim due jobs (scripts, timers, timeouts, SLA checks, schedule ticks), do
the slow part outside any transaction, then apply the result here in one transaction
that also marks the job done. External workers lease waiting automated steps, keep the
lease alive, and submit or fail them. Each use case is one transaction, as in service.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from ulid import ULID

from opensop.auth import Principal, Scope
from opensop.definition import models
from opensop.definition.cron import next_fire_time, parse_cron
from opensop.definition.durations import parse_duration
from opensop.definition.values import validate_values
from opensop.engine import background, machine
from opensop.engine.jobs import JobKind, JobRequest, script_timeout_seconds
from opensop.engine.records import Transition
from opensop.errors import InvalidInputs, InvalidTransition, LeaseLost, NotFound
from opensop.runtime.scripts import ScriptOutcome, ScriptRequest
from opensop.store import instances as instance_store
from opensop.store import jobs as job_store
from opensop.store import leases as lease_store
from opensop.store import processes as process_store
from opensop.store.jobs import Job
from opensop.store.leases import ClaimedStep

if TYPE_CHECKING:
    from opensop.service import InstanceView, Service, Submitted

MIN_LEASE_SECONDS = 1
MAX_LEASE_SECONDS = 3600
MAX_CLAIM = 100
# A schedule tick this late is "missed": catch_up decides whether it still starts one.
MISSED_TICK_GRACE = timedelta(seconds=60)
_JOB_RETRY_DELAY = timedelta(seconds=5)
_MAX_JOB_ATTEMPTS = 5


# Step ids one claim may name: a filter, not a list of every step there is.
_MAX_CLAIM_STEP_IDS = 500


@dataclass(frozen=True)
class WorkerLease:
    step: ClaimedStep


class Work:
    def __init__(self, service: Service, process_dir: Path | None) -> None:
        self.service = service
        self.db = service.db
        self.clock = service.clock
        self.process_dir = process_dir
        self._wakers: list[Callable[[], None]] = []

    # -- wake-ups ----------------------------------------------------------------------

    def on_jobs(self, waker: Callable[[], None]) -> None:
        """Call ``waker`` after any commit that queued jobs (runners sleep until then)."""
        self._wakers.append(waker)

    def jobs_queued(self) -> None:
        for waker in self._wakers:
            waker()

    # -- external workers --------------------------------------------------------------

    def claim_steps(self, principal: Principal, body: Mapping[str, Any]) -> list[ClaimedStep]:
        _require(principal, Scope.ADVANCE)
        worker = body.get("worker")
        details: list[dict[str, Any]] = []
        if not isinstance(worker, str) or not 0 < len(worker) <= 255:
            details.append({"field": "worker", "code": "required", "expected": "string"})
        lease_seconds = _int_field(
            body, "lease_seconds", 60, MIN_LEASE_SECONDS, MAX_LEASE_SECONDS, details
        )
        limit = _int_field(body, "limit", 1, 1, MAX_CLAIM, details)
        process = body.get("process")
        if process is not None and not isinstance(process, str):
            details.append({"field": "process", "code": "type_mismatch", "expected": "string"})
        step_ids = body.get("step_ids")
        if step_ids is not None and (
            not isinstance(step_ids, list)
            or len(step_ids) > _MAX_CLAIM_STEP_IDS
            or not all(isinstance(s, str) for s in step_ids)
        ):
            details.append(
                {
                    "field": "step_ids",
                    "code": "type_mismatch",
                    "expected": f"string[] of at most {_MAX_CLAIM_STEP_IDS}",
                }
            )
        unknown = set(body) - {"worker", "lease_seconds", "limit", "process", "step_ids"}
        details.extend({"field": k[:128], "code": "unknown_field"} for k in sorted(unknown))
        if details:
            raise InvalidInputs("The claim request failed validation.", details)
        now = self.clock.now()
        return self.db.run_write(
            lambda conn: lease_store.claim(
                conn,
                workspace_id=principal.workspace_id,
                worker=str(worker),
                now=now,
                lease_until=now + timedelta(seconds=lease_seconds),
                limit=limit,
                process_name=process,
                step_ids=step_ids,
            )
        )

    def heartbeat(self, principal: Principal, body: Mapping[str, Any]) -> datetime:
        _require(principal, Scope.ADVANCE)
        token = body.get("lease_token")
        details: list[dict[str, Any]] = []
        if not isinstance(token, str) or not token:
            details.append({"field": "lease_token", "code": "required", "expected": "string"})
        lease_seconds = _int_field(
            body, "lease_seconds", 60, MIN_LEASE_SECONDS, MAX_LEASE_SECONDS, details
        )
        unknown = set(body) - {"lease_token", "lease_seconds"}
        details.extend({"field": k[:128], "code": "unknown_field"} for k in sorted(unknown))
        if details:
            raise InvalidInputs("The heartbeat failed validation.", details)
        now = self.clock.now()
        until = now + timedelta(seconds=lease_seconds)
        extended = self.db.run_write(
            lambda conn: lease_store.extend(conn, principal.workspace_id, str(token), now, until)
        )
        if not extended:
            raise LeaseLost("The lease expired, was never granted, or the step moved on.")
        return until

    def check_lease(
        self, stored: instance_store.StoredInstance, step_id: str, given: Any, now: datetime
    ) -> None:
        """A live lease reserves the step for its holder; a stale token is refused."""
        lease = stored.leases.get(step_id)
        live = lease is not None and lease.expires_at > now
        if given is None and not live:
            return
        if given is not None and not isinstance(given, str):
            raise InvalidInputs(
                "lease_token must be a string.",
                [{"field": "lease_token", "code": "type_mismatch", "expected": "string"}],
            )
        if not live or lease is None or lease.token != given:
            raise LeaseLost(
                "Another worker holds this step's lease."
                if given is None
                else "This lease expired or belongs to another worker."
            )

    def fail_step(
        self,
        principal: Principal,
        name: str,
        instance_id: str,
        step_id: str,
        body: Mapping[str, Any],
    ) -> Submitted:
        from opensop.service import InstanceView, Submitted

        _require(principal, Scope.ADVANCE)
        message = body.get("error")
        retryable = body.get("retryable", True)
        details: list[dict[str, Any]] = []
        if not isinstance(message, str) or not message.strip():
            details.append({"field": "error", "code": "required", "expected": "string"})
        if not isinstance(retryable, bool):
            details.append({"field": "retryable", "code": "type_mismatch", "expected": "boolean"})
        unknown = set(body) - {"error", "lease_token", "retryable"}
        details.extend({"field": k[:128], "code": "unknown_field"} for k in sorted(unknown))
        if details:
            raise InvalidInputs("The failure report failed validation.", details)
        now = self.clock.now()

        def fail(conn: sa.Connection) -> Submitted:
            stored = self.service.waiting_step(
                conn, principal, name, instance_id, step_id, body.get("lease_token"), now
            )
            run = stored.run.steps[step_id]
            definition = self.service.definition_by_id(conn, stored.process_id)
            transition = background.attempt_failed(
                stored.run,
                definition,
                step_id,
                run.attempt,
                code="worker_error",
                message=str(message)[:2000],
                now=now,
                actor=principal.actor,
                retryable=bool(retryable),
            )
            if transition is None:  # a form, approval or escalated step: no worker runs it
                raise InvalidTransition(
                    f"Step '{step_id}' is {run.sub_state}; only a step waiting for a worker "
                    "can be reported failed."
                )
            instance_store.save_transition(conn, stored, transition, now)
            view = InstanceView(transition.instance, definition)
            return Submitted(transition.instance.steps[step_id], view)

        submitted = self.db.run_write(fail)
        self.service.db.after_commit(self.jobs_queued)
        return submitted

    def retry_step(
        self, principal: Principal, name: str, instance_id: str, step_id: str
    ) -> InstanceView:
        from opensop.service import InstanceView

        _require(principal, Scope.ADVANCE)
        now = self.clock.now()

        def retry(conn: sa.Connection) -> InstanceView:
            stored = self.service.load_for(conn, principal, name, instance_id, for_update=True)
            if step_id not in stored.run.steps:
                raise NotFound(f"Instance {instance_id} has no step '{step_id[:128]}'.")
            definition = self.service.definition_by_id(conn, stored.process_id)
            transition = background.retry_failed_step(
                stored.run, definition, step_id, now, principal.actor
            )
            instance_store.save_transition(conn, stored, transition, now)
            return InstanceView(transition.instance, definition)

        view = self.db.run_write(retry)
        self.service.db.after_commit(self.jobs_queued)
        return view

    # -- job runners -------------------------------------------------------------------

    def claim_jobs(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        now = self.clock.now()
        until = now + timedelta(seconds=lease_seconds)
        return self.db.run_write(
            lambda conn: job_store.claim_due(
                conn, owner=owner, now=now, lease_until=until, limit=limit
            )
        )

    def extend_job(self, job: Job, lease_seconds: float) -> bool:
        until = self.clock.now() + timedelta(seconds=lease_seconds)
        return self.db.run_write(lambda conn: job_store.extend(conn, job, until))

    def hand_back_jobs(self, jobs: list[Job]) -> int:
        """End the leases of jobs a stopping runner did not finish, in one transaction,
        so any runner can claim them at once; how many were still held."""
        if not jobs:
            return 0
        now = self.clock.now()
        return self.db.run_write(
            lambda conn: sum(job_store.hand_back(conn, job, now) for job in jobs)
        )

    def next_due_at(self) -> datetime | None:
        with self.db.read() as conn:
            return job_store.next_due_at(conn)

    def script_request(self, job: Job) -> ScriptRequest | None:
        """What to run for a RUN_SCRIPT job; None when the step moved on (stale job)."""
        assert job.instance_id is not None and job.step_id is not None
        with self.db.read() as conn:
            stored = instance_store.load_instance(conn, job.workspace_id, job.instance_id)
            if stored is None:
                return None
            run = stored.run.steps.get(job.step_id)
            attempt = int(job.payload.get("attempt", 0))
            if run is None or run.attempt != attempt or stored.run.state.is_terminal:
                return None
            definition = self.service.definition_by_id(conn, stored.process_id)
            record = process_store.get_by_id(conn, stored.process_id)
        step = definition.step(job.step_id)
        assert isinstance(step, models.AutomatedStep) and step.run is not None
        root = Path(record.base_dir) if record.base_dir else self.process_dir
        if root is None:
            return None
        key = hashlib.sha256(f"{job.instance_id}/{job.step_id}/{attempt}".encode()).hexdigest()
        return ScriptRequest(
            process_dir=root,
            run=step.run,
            inputs=run.inputs or {},
            instance_id=job.instance_id,
            step_id=job.step_id,
            attempt=attempt,
            idempotency_key=key[:32],
            timeout_seconds=script_timeout_seconds(step),
        )

    def apply_script_outcome(self, job: Job, outcome: ScriptOutcome) -> None:
        def apply(
            stored: instance_store.StoredInstance,
            definition: models.ProcessDefinition,
            now: datetime,
        ) -> Transition | None:
            assert job.step_id is not None
            attempt = int(job.payload.get("attempt", 0))
            step = definition.step(job.step_id)
            stderr = outcome.stderr or None
            if outcome.ok and outcome.outputs is not None:
                strict = isinstance(step, models.AutomatedStep) and step.validation == "strict"
                violations = validate_values(
                    step.outputs, outcome.outputs, allow_unknown=not strict
                )
                if not violations:
                    return background.script_succeeded(
                        stored.run,
                        definition,
                        job.step_id,
                        attempt,
                        outcome.outputs,
                        now,
                        stderr=stderr,
                    )
                return background.attempt_failed(
                    stored.run,
                    definition,
                    job.step_id,
                    attempt,
                    code="invalid_outputs",
                    message="; ".join(v.message for v in violations[:5]),
                    now=now,
                    actor="engine:script",
                    details={"violations": [v.to_json() for v in violations[:20]]},
                    stderr=stderr,
                )
            return background.attempt_failed(
                stored.run,
                definition,
                job.step_id,
                attempt,
                code=str(outcome.error_code or "script_failed"),
                message=outcome.error_message or "the script failed",
                now=now,
                actor="engine:script",
                details={"exit_status": outcome.exit_status},
                stderr=stderr,
            )

        self._apply(job, apply)

    def apply_job(self, job: Job) -> None:
        """Timers, timeouts, SLA checks and schedule ticks: no slow part, only the result."""
        if job.kind is JobKind.SCHEDULE_TICK:
            self._fire_schedule(job)
            return

        def apply(
            stored: instance_store.StoredInstance,
            definition: models.ProcessDefinition,
            now: datetime,
        ) -> Transition | None:
            attempt = int(job.payload.get("attempt", 0))
            if job.kind is JobKind.WAIT_TIMER:
                assert job.step_id is not None
                return background.timer_fired(stored.run, definition, job.step_id, attempt, now)
            if job.kind is JobKind.STEP_TIMEOUT:
                assert job.step_id is not None
                return background.step_timed_out(stored.run, definition, job.step_id, attempt, now)
            if job.kind is JobKind.SLA_CHECK:
                return background.sla_due(stored.run, str(job.payload.get("level")), definition)
            raise ValueError(f"unknown job kind {job.kind}")

        self._apply(job, apply)

    def apply_job_stale(self, job: Job) -> None:
        """Finish a job whose step moved on: there is nothing to apply."""
        self.db.run_write(lambda conn: job_store.finish(conn, job))

    def job_failed(self, job: Job, error: str) -> None:
        """The runner could not do the job: try again later, then give up."""
        now = self.clock.now()

        def record(conn: sa.Connection) -> None:
            if job.attempt >= _MAX_JOB_ATTEMPTS:
                job_store.give_up(conn, job, error)
            else:
                job_store.release(conn, job, error, now + _JOB_RETRY_DELAY * job.attempt)

        self.db.run_write(record)

    def _apply(
        self,
        job: Job,
        decide: Callable[
            [instance_store.StoredInstance, models.ProcessDefinition, datetime],
            Transition | None,
        ],
    ) -> None:
        now = self.clock.now()

        def apply(conn: sa.Connection) -> bool:
            if not job_store.finish(conn, job):
                return False  # our lease ran out and another runner took the job
            assert job.instance_id is not None
            stored = instance_store.load_instance(
                conn, job.workspace_id, job.instance_id, for_update=True
            )
            if stored is None:
                return False
            definition = self.service.definition_by_id(conn, stored.process_id)
            transition = decide(stored, definition, now)
            if transition is None:
                return False  # stale: the step moved on since the job was written
            instance_store.save_transition(conn, stored, transition, now)
            return bool(transition.jobs)

        if self.db.run_write(apply):
            self.service.db.after_commit(self.jobs_queued)

    # -- schedules ---------------------------------------------------------------------

    def _fire_schedule(self, job: Job) -> None:
        now = self.clock.now()
        name = str(job.payload.get("process"))
        process_id = int(job.payload.get("process_id", 0))

        def fire(conn: sa.Connection) -> bool:
            if not job_store.finish(conn, job):
                return False
            latest = process_store.find_latest_id(conn, job.workspace_id, name)
            if latest != process_id:
                return False  # a newer version took over the schedule (it queued its own)
            definition = self.service.definition_by_id(conn, process_id)
            trigger = definition.trigger
            if not isinstance(trigger, models.ScheduleTrigger | models.IntervalTrigger):
                return False
            missed = now - job.due_at > MISSED_TICK_GRACE
            if not (missed and trigger.catch_up == "skip"):
                problem = self._start_scheduled(conn, job, definition, process_id, now)
                if problem is not None:
                    # Nothing to start: the schedule's inputs do not fit the process. The
                    # reason stays on the job; the next tick is queued so a fix applies.
                    job_store.note_error(conn, job, problem)
            tick = schedule_tick(job.workspace_id, process_id, definition, job.due_at, now)
            job_store.enqueue(conn, job_store.job_rows(job.workspace_id, None, [tick], now))
            return True

        if self.db.run_write(fire):
            self.service.db.after_commit(self.jobs_queued)

    def _start_scheduled(
        self,
        conn: sa.Connection,
        job: Job,
        definition: models.ProcessDefinition,
        process_id: int,
        now: datetime,
    ) -> str | None:
        """Start one instance for this tick; the reason instead when its inputs are bad."""
        trigger = definition.trigger
        assert isinstance(trigger, models.ScheduleTrigger | models.IntervalTrigger)
        inputs = dict(trigger.inputs)
        payload = {"scheduled_for": job.due_at.isoformat().replace("+00:00", "Z")}
        violations = validate_values(definition.inputs, inputs)
        if violations:
            return "schedule inputs: " + "; ".join(v.message for v in violations[:5])
        run = machine.new_instance(
            instance_id=str(ULID.from_datetime(now)),
            workspace_id=job.workspace_id,
            definition=definition,
            inputs=inputs,
            metadata=None,
            now=now,
            trigger_payload=payload,
        )
        transition = machine.start(run, definition, now, "schedule")
        rows = instance_store.new_instance_rows(
            transition, process_id=process_id, idempotency_key=None, request_hash=None, now=now
        )
        instance_store.insert_instance(conn, rows)
        return None


def schedule_tick(
    workspace_id: str,
    process_id: int,
    definition: models.ProcessDefinition,
    previous: datetime,
    now: datetime | None = None,
) -> JobRequest:
    """The first tick of a schedule or interval trigger after ``now`` (by default
    ``previous``), enqueued once.

    Ticks missed meanwhile are not queued one by one: the next is after ``now``.
    """
    now = now or previous
    trigger = definition.trigger
    if isinstance(trigger, models.ScheduleTrigger):
        due = next_fire_time(parse_cron(trigger.cron), max(previous, now), trigger.timezone)
    else:
        assert isinstance(trigger, models.IntervalTrigger)
        due = max(previous, now) + timedelta(seconds=parse_duration(trigger.interval))
    key = f"tick:{workspace_id}:{definition.name}:{process_id}:{due.isoformat()}"
    return JobRequest(
        JobKind.SCHEDULE_TICK,
        due,
        None,
        {"process": definition.name, "process_id": process_id},
        dedup_key=key[:255],
    )


def _require(principal: Principal, scope: Scope) -> None:
    from opensop.service import require

    require(principal, scope)


def _int_field(
    body: Mapping[str, Any],
    name: str,
    default: int,
    low: int,
    high: int,
    details: list[dict[str, Any]],
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        details.append(
            {"field": name, "code": "type_mismatch", "expected": f"integer {low}-{high}"}
        )
        return default
    return value
