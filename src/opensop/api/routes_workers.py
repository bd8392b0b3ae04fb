"""External workers: lease waiting automated steps, keep leases alive, report failure;
operators: retry a failed step."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from opensop.api import serialize
from opensop.api.context import as_caller, context_of, json_object, read_body
from opensop.api.routes_instances import check_id
from opensop.auth import Principal, Scope

router = APIRouter(tags=["workers"])


@router.post("/sop/steps/claim", summary="Lease waiting automated steps (empty when none)")
async def claim(request: Request) -> JSONResponse:
    raw = await read_body(request)
    work = context_of(request).service.work
    claimed = await as_caller(
        request,
        lambda principal: work.claim_steps(principal, json_object(raw)),
        Scope.ADVANCE,
        writes=True,
    )
    return JSONResponse(
        [
            {
                "step_id": step.step_id,
                "instance_id": step.instance_id,
                "process": step.process_name,
                "version": step.process_version,
                "inputs": step.inputs,
                "attempt": step.attempt,
                "lease_token": step.lease_token,
                "lease_expires_at": serialize.timestamp(step.lease_expires_at),
            }
            for step in claimed
        ]
    )


@router.post("/sop/steps/heartbeat", summary="Keep a step lease alive")
async def heartbeat(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    work = context_of(request).service.work
    until = await as_caller(
        request,
        lambda principal: work.heartbeat(principal, json_object(raw)),
        Scope.ADVANCE,
        writes=True,
    )
    return {"lease_expires_at": serialize.timestamp(until)}


@router.post("/sop/{name}/{instance_id}/steps/{step_id}/fail", summary="Report a failed attempt")
async def fail(request: Request, name: str, instance_id: str, step_id: str) -> JSONResponse:
    raw = await read_body(request)
    work = context_of(request).service.work

    def act(principal: Principal) -> Any:
        canonical = check_id(instance_id)
        return work.fail_step(principal, name, canonical, step_id, json_object(raw))

    failed = await as_caller(request, act, Scope.ADVANCE, writes=True)
    step = failed.view.definition.step(step_id)
    return JSONResponse(
        {
            **serialize.step_json(failed.step, step),
            "instance": serialize.instance_brief(failed.view.run),
        }
    )


@router.post("/sop/{name}/{instance_id}/steps/{step_id}/retry", summary="Re-run a failed step")
async def retry(request: Request, name: str, instance_id: str, step_id: str) -> dict[str, Any]:
    work = context_of(request).service.work

    def act(principal: Principal) -> Any:
        canonical = check_id(instance_id)
        return work.retry_step(principal, name, canonical, step_id)

    return serialize.instance_json(await as_caller(request, act, Scope.ADVANCE, writes=True))
