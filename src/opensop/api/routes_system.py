"""Health and the operator's views."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opensop.api.context import as_caller, context_of
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
    try:
        seconds = parse_duration(window)
    except InvalidDuration as error:
        raise InvalidQuery(
            f"window: {error}",
            [{"field": "window", "code": "invalid_format", "expected": "duration like 24h"}],
        ) from None
    if seconds <= 0:
        raise InvalidQuery(
            "window must be positive.", [{"field": "window", "code": "invalid_format"}]
        )
    service = context_of(request).service
    return await as_caller(
        request,
        lambda principal: service.metrics(principal, window_seconds=seconds, process_name=process),
    )


@router.get("/sop/processes/status", tags=["metrics"], summary="One status row per process")
async def process_status(request: Request) -> Any:
    rows = await as_caller(request, context_of(request).service.process_status)
    return {"processes": rows}
