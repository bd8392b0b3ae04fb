"""Instances and their steps: start, watch, submit, cancel, list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from opensop.api import serialize
from opensop.api.context import as_caller, context_of, read_json, read_json_object
from opensop.engine.states import InstanceState
from opensop.errors import InvalidInputs, InvalidQuery, NotFound

router = APIRouter(tags=["instances"])

MAX_PAGE = 200
_ULID_LENGTH = 26


@router.get("/sop/instances", summary="List instances, newest first")
async def list_instances(
    request: Request,
    process: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    after: str | None = None,
) -> JSONResponse:
    parsed_state = None
    if state is not None:
        try:
            parsed_state = InstanceState(state)
        except ValueError:
            allowed = ", ".join(s.value for s in InstanceState)
            raise InvalidQuery(
                f"state must be one of {allowed}.",
                [
                    {
                        "field": "state",
                        "code": "not_in_enum",
                        "expected": [s.value for s in InstanceState],
                    }
                ],
            ) from None
    service = context_of(request).service
    rows, total = await as_caller(
        request,
        lambda principal: service.list_instances(
            principal,
            process_name=process,
            state=parsed_state,
            limit=limit,
            offset=offset,
            after=after,
        ),
    )
    headers = {"X-Total-Count": str(total)}
    if len(rows) == limit:
        headers["X-Next-After"] = rows[-1].id
    return JSONResponse([serialize.summary_json(row) for row in rows], headers=headers)


@router.get("/sop/steps/pending", summary="Automated steps waiting for an external worker")
async def pending_steps(request: Request) -> list[dict[str, Any]]:
    work = await as_caller(request, context_of(request).service.pending_steps)
    return [serialize.pending_json(item) for item in work]


@router.post("/sop/{name}/start", status_code=201, summary="Start an instance")
async def start(
    request: Request,
    name: str,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    body = await read_json(request)
    payload = body if isinstance(body, dict) else {}
    _refuse_unknown(payload, {"inputs", "metadata"})
    service = context_of(request).service
    started = await as_caller(
        request,
        lambda principal: service.start(principal, name, payload, idempotency_key=idempotency_key),
    )
    return JSONResponse(
        serialize.instance_json(started.view), status_code=201 if started.created else 200
    )


@router.get("/sop/{name}/{instance_id}", summary="An instance with its steps")
async def get_instance(request: Request, name: str, instance_id: str) -> dict[str, Any]:
    _check_id(instance_id)
    service = context_of(request).service
    view = await as_caller(
        request, lambda principal: service.get_instance(principal, name, instance_id)
    )
    return serialize.instance_json(view)


@router.get("/sop/{name}/{instance_id}/steps", summary="An instance's steps in order")
async def get_steps(request: Request, name: str, instance_id: str) -> list[dict[str, Any]]:
    _check_id(instance_id)
    service = context_of(request).service
    view = await as_caller(
        request, lambda principal: service.get_instance(principal, name, instance_id)
    )
    return serialize.steps_json(view)


@router.get("/sop/{name}/{instance_id}/events", summary="An instance's audit log")
async def get_events(request: Request, name: str, instance_id: str) -> list[dict[str, Any]]:
    _check_id(instance_id)
    service = context_of(request).service
    rows = await as_caller(
        request, lambda principal: service.instance_events(principal, name, instance_id)
    )
    return [{**row, "created_at": serialize.timestamp(row["created_at"])} for row in rows]


@router.post("/sop/{name}/{instance_id}/steps/{step_id}/submit", summary="Complete a step")
async def submit(request: Request, name: str, instance_id: str, step_id: str) -> dict[str, Any]:
    _check_id(instance_id)
    body = await read_json(request)
    payload = body if isinstance(body, dict) else {"outputs": body}
    _refuse_unknown(payload, {"outputs", "decided_by", "confidence", "lease_token"})
    service = context_of(request).service
    submitted = await as_caller(
        request, lambda principal: service.submit(principal, name, instance_id, step_id, payload)
    )
    step = submitted.view.definition.step(step_id)
    return {
        **serialize.step_json(submitted.step, step),
        "instance": serialize.instance_brief(submitted.view.run),
    }


@router.post("/sop/{name}/{instance_id}/cancel", summary="Cancel an instance")
async def cancel(request: Request, name: str, instance_id: str) -> dict[str, Any]:
    _check_id(instance_id)
    body = await read_json_object(request, optional=True)
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
        raise InvalidInputs(
            "reason must be a string of at most 2000 characters.",
            [{"field": "reason", "code": "type_mismatch", "expected": "string"}],
        )
    service = context_of(request).service
    view = await as_caller(
        request, lambda principal: service.cancel(principal, name, instance_id, reason)
    )
    return serialize.instance_json(view)


def _check_id(instance_id: str) -> None:
    # Anything that cannot be a ULID cannot name an instance: answer without a query.
    if len(instance_id) != _ULID_LENGTH or not instance_id.isalnum():
        raise NotFound(f"No instance {instance_id[:40]!r}.")


def _refuse_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInputs(
            f"Unknown field {unknown[0][:64]!r} in the request body.",
            [{"field": key[:128], "code": "unknown_field"} for key in unknown],
        )
