"""Instances and their steps: start, watch, submit, cancel, list.

Every check of the body, path or query runs inside the authenticated action, so a
caller without a valid token gets 401 whatever else is wrong with the request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from opensop.api import serialize
from opensop.api.context import as_caller, context_of, json_object, parse_json, read_body
from opensop.auth import Principal, Scope
from opensop.engine.states import InstanceState
from opensop.errors import InvalidInputs, InvalidQuery, NotFound

router = APIRouter(tags=["instances"])

MAX_PAGE = 200
DEFAULT_PAGE = 50
_MAX_OFFSET = 1_000_000
_ULID_LENGTH = 26


@router.get("/sop/instances", summary="List instances, newest first")
async def list_instances(
    request: Request,
    process: str | None = None,
    state: str | None = None,
    limit: str | None = None,
    offset: str | None = None,
    after: str | None = None,
) -> JSONResponse:
    service = context_of(request).service

    def act(principal: Principal) -> Any:
        page = _bounded_int("limit", limit, DEFAULT_PAGE, 1, MAX_PAGE)
        skip = _bounded_int("offset", offset, 0, 0, _MAX_OFFSET)
        rows, total = service.list_instances(
            principal,
            process_name=process,
            state=_instance_state(state),
            limit=page,
            offset=skip,
            after=after,
        )
        return rows, total, page

    rows, total, page = await as_caller(request, act, Scope.VIEW)
    headers = {"X-Total-Count": str(total)}
    if len(rows) == page:
        headers["X-Next-After"] = rows[-1].id
    return JSONResponse([serialize.summary_json(row) for row in rows], headers=headers)


@router.get("/sop/steps/pending", summary="Automated steps waiting for an external worker")
async def pending_steps(request: Request) -> JSONResponse:
    work = await as_caller(request, context_of(request).service.pending_steps)
    return JSONResponse([serialize.pending_json(item) for item in work])


_IDEMPOTENCY_HEADER = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "A repeat with the same key and body returns the first instance.",
        }
    ]
}


@router.post(
    "/sop/{name}/start",
    status_code=201,
    summary="Start an instance",
    openapi_extra=_IDEMPOTENCY_HEADER,
)
async def start(request: Request, name: str) -> JSONResponse:
    # Read by hand, not as a FastAPI Header parameter: this is the busiest route.
    idempotency_key = request.headers.get("idempotency-key")
    raw = await read_body(request)
    service = context_of(request).service

    def act(principal: Principal) -> Any:
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 255:
            raise InvalidInputs(
                "Idempotency-Key must be 1 to 255 characters.",
                [{"field": "Idempotency-Key", "code": "invalid_format", "expected": "1-255"}],
            )
        payload = json_object(raw)
        _refuse_unknown(payload, {"inputs", "metadata"})
        return service.start(principal, name, payload, idempotency_key=idempotency_key)

    started = await as_caller(request, act, Scope.START, writes=True)
    return JSONResponse(
        serialize.instance_json(started.view), status_code=201 if started.created else 200
    )


@router.get("/sop/{name}/{instance_id}", summary="An instance with its steps")
async def get_instance(request: Request, name: str, instance_id: str) -> JSONResponse:
    service = context_of(request).service

    def act(principal: Principal) -> Any:
        canonical = check_id(instance_id)
        return service.get_instance(principal, name, canonical)

    return JSONResponse(serialize.instance_json(await as_caller(request, act, Scope.VIEW)))


@router.get("/sop/{name}/{instance_id}/steps", summary="An instance's steps in order")
async def get_steps(request: Request, name: str, instance_id: str) -> JSONResponse:
    service = context_of(request).service

    def act(principal: Principal) -> Any:
        canonical = check_id(instance_id)
        return service.get_instance(principal, name, canonical)

    return JSONResponse(serialize.steps_json(await as_caller(request, act, Scope.VIEW)))


@router.get("/sop/{name}/{instance_id}/events", summary="An instance's audit log")
async def get_events(request: Request, name: str, instance_id: str) -> list[dict[str, Any]]:
    service = context_of(request).service

    def act(principal: Principal) -> Any:
        canonical = check_id(instance_id)
        return service.instance_events(principal, name, canonical)

    rows = await as_caller(request, act, Scope.VIEW)
    return [{**row, "created_at": serialize.timestamp(row["created_at"])} for row in rows]


@router.post("/sop/{name}/{instance_id}/steps/{step_id}/submit", summary="Complete a step")
async def submit(request: Request, name: str, instance_id: str, step_id: str) -> JSONResponse:
    raw = await read_body(request)
    service = context_of(request).service

    def act(principal: Principal) -> Any:
        canonical = check_id(instance_id)
        body = parse_json(raw)
        payload = body if isinstance(body, dict) else {"outputs": body}
        _refuse_unknown(payload, {"outputs", "decided_by", "confidence", "lease_token"})
        return service.submit(principal, name, canonical, step_id, payload)

    submitted = await as_caller(request, act, Scope.ADVANCE, writes=True)
    step = submitted.view.definition.step(step_id)
    return JSONResponse(
        {
            **serialize.step_json(submitted.step, step),
            "instance": serialize.instance_brief(submitted.view.run),
        }
    )


@router.post("/sop/{name}/{instance_id}/cancel", summary="Cancel an instance")
async def cancel(request: Request, name: str, instance_id: str) -> JSONResponse:
    raw = await read_body(request)
    service = context_of(request).service

    def act(principal: Principal) -> Any:
        canonical = check_id(instance_id)
        body = parse_json(raw, optional=True)
        if body is not None and not isinstance(body, dict):
            raise InvalidInputs(
                'The body must be a JSON object like {"reason": "..."}.',
                [{"field": "", "code": "type_mismatch", "expected": "object"}],
            )
        body = body or {}
        _refuse_unknown(body, {"reason"})
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
            raise InvalidInputs(
                "reason must be a string of at most 2000 characters.",
                [{"field": "reason", "code": "type_mismatch", "expected": "string"}],
            )
        return service.cancel(principal, name, canonical, reason)

    return JSONResponse(
        serialize.instance_json(await as_caller(request, act, Scope.CANCEL, writes=True))
    )


def check_id(instance_id: str) -> str:
    """The instance id as stored (ULIDs are case-insensitive; we store upper case).

    Anything that cannot be a ULID cannot name an instance: answer without a query.
    """
    if len(instance_id) != _ULID_LENGTH or not (instance_id.isascii() and instance_id.isalnum()):
        raise NotFound(f"No instance {instance_id[:40]!r}.")
    return instance_id.upper()


def _refuse_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInputs(
            f"Unknown field {unknown[0][:64]!r} in the request body.",
            [{"field": key[:128], "code": "unknown_field"} for key in unknown],
        )


def _instance_state(text: str | None) -> InstanceState | None:
    if text is None:
        return None
    try:
        return InstanceState(text)
    except ValueError:
        allowed = [s.value for s in InstanceState]
        raise InvalidQuery(
            f"state must be one of {', '.join(allowed)}.",
            [{"field": "state", "code": "not_in_enum", "expected": allowed}],
        ) from None


def _bounded_int(name: str, text: str | None, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise InvalidQuery(
            f"{name} must be a whole number from {low} to {high}.",
            [{"field": name, "code": "invalid_format", "expected": f"{low}-{high}"}],
        )
    return int(text)
