"""Health and the operator's views."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opensop.api.context import context_of

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="200 once the store answers (no token needed)")
async def healthz(request: Request) -> JSONResponse:
    service = context_of(request).service
    healthy = await run_in_threadpool(service.store_answers)
    if healthy:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "unavailable"}, status_code=503)
