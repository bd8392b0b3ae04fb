"""Health and the operator's views."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opensop.api.context import as_caller, context_of
from opensop.auth import Principal, Scope
from opensop.definition.durations import InvalidDuration, parse_duration
from opensop.errors import InvalidQuery

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="200 once the store answers (no token needed)")
async def healthz(request: Request) -> JSONResponse:
    service = context_of(request).service
    healthy = await run_in_threadpool(service.store_answers)
    if healthy:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "unavailable"}, status_code=503)


@router.get("/sop/metrics", tags=["metrics"], summary="Instance and step metrics over a window")
async def metrics(request: Request, window: str = "24h", process: str | None = None) -> Any:
    service = context_of(request).service

    def act(principal: Principal) -> Any:
        seconds = _window_seconds(window)
        return service.metrics(principal, window_seconds=seconds, process_name=process)

    return await as_caller(request, act, Scope.VIEW)


def _window_seconds(window: str) -> float:
    try:
        seconds = parse_duration(window)
    except InvalidDuration as error:
        seconds = 0.0
        reason = str(error)
    else:
        reason = "window must be positive"
    if seconds <= 0:
        raise InvalidQuery(
            f"window: {reason}",
            [{"field": "window", "code": "invalid_format", "expected": "duration like 24h"}],
        )
    return seconds


@router.get("/sop/processes/status", tags=["metrics"], summary="One status row per process")
async def process_status(request: Request) -> Any:
    rows = await as_caller(request, context_of(request).service.process_status)
    return {"processes": rows}
