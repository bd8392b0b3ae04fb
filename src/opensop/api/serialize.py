"""The JSON shapes of the API, built explicitly from engine records (never from rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opensop.definition import models
from opensop.engine.records import InstanceRun, StepRun
from opensop.service import InstanceView, ProcessListing
from opensop.store.instances import InstanceSummary, PendingWork
from opensop.store.processes import ProcessRecord
from opensop.store.tokens import TokenRecord


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instance_json(view: InstanceView) -> dict[str, Any]:
    run = view.run
    # The first five fields are the seed's response, in the seed's order.
    return {
        "id": run.id,
        "process": run.process_name,
        "version": run.process_version,
        "state": run.state.value,
        "started_at": timestamp(run.started_at),
        "completed_at": timestamp(run.completed_at),
        "inputs": run.inputs,
        "outputs": run.outputs,
        "metadata": run.metadata,
        "error": run.error,
        "current_step": _current_step(run),
        "steps": steps_json(view),
        "links": {
            "self": f"/sop/{run.process_name}/{run.id}",
            "steps": f"/sop/{run.process_name}/{run.id}/steps",
            "cancel": f"/sop/{run.process_name}/{run.id}/cancel",
        },
    }


def instance_brief(run: InstanceRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "state": run.state.value,
        "outputs": run.outputs,
        "completed_at": timestamp(run.completed_at),
        "current_step": _current_step(run),
    }


def _current_step(run: InstanceRun) -> dict[str, Any] | None:
    for step in run.step_runs():
        if step.state.value == "active":
            return {
                "id": step.step_id,
                "sub_state": step.sub_state.value if step.sub_state else None,
            }
    return None


def steps_json(view: InstanceView) -> list[dict[str, Any]]:
    names = {step.id: step for step in view.definition.steps}
    return [step_json(run, names.get(run.step_id)) for run in view.run.step_runs()]


def step_json(run: StepRun, step: models.StepBase | None) -> dict[str, Any]:
    return {
        "id": run.step_id,
        "name": (step.name if step else None) or run.step_id,
        "type": run.type,
        "state": run.state.value,
        "sub_state": run.sub_state.value if run.sub_state else None,
        "inputs": run.inputs,
        "outputs": run.outputs,
        "decided_by": run.decided_by,
        "confidence": run.confidence,
        "attempt": run.attempt,
        "error": run.error,
        "started_at": timestamp(run.started_at),
        "completed_at": timestamp(run.completed_at),
        "assignee": step.assignee if step else None,
        "role": step.role if step else None,
        "due_at": timestamp(run.due_at),
        "stderr": run.stderr,
    }


def summary_json(summary: InstanceSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "process": summary.process_name,
        "version": summary.process_version,
        "state": summary.state,
        "started_at": timestamp(summary.started_at),
        "completed_at": timestamp(summary.completed_at),
    }


def pending_json(work: PendingWork) -> dict[str, Any]:
    return {
        "step_id": work.step_id,
        "instance_id": work.instance_id,
        "process": work.process_name,
        "inputs": work.inputs,
    }


def process_summary_json(listing: ProcessListing) -> dict[str, Any]:
    record, definition = listing.record, listing.definition
    return {
        "name": definition.name,
        "version": definition.version,
        "description": definition.description,
        "owner": definition.owner,
        "tags": list(definition.tags),
        "trigger": definition.trigger.type,
        "inputs_summary": [
            {
                "name": field.name,
                "type": field.type.value,
                "required": field.required,
                **({"values": list(field.values)} if field.values else {}),
            }
            for field in definition.inputs
        ],
        "schema_url": f"/sop/{definition.name}/schema",
        "next_run_at": timestamp(listing.next_run_at),
        "published_at": timestamp(record.published_at),
    }


def definition_json(record: ProcessRecord) -> dict[str, Any]:
    return {
        "opensop": record.definition.get("opensop", "0.1"),
        **record.definition,
        "published_at": timestamp(record.published_at),
    }


def token_json(record: TokenRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "scopes": list(record.scopes),
        "created_at": timestamp(record.created_at),
        "last_used_at": timestamp(record.last_used_at),
        "prefix": record.prefix,
    }
