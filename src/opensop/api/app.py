"""The HTTP application: one factory, one error envelope, thin routes over the service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from opensop.api import (
    routes_instances,
    routes_processes,
    routes_system,
    routes_tokens,
    routes_workers,
)
from opensop.api.context import ApiContext, InFlight
from opensop.api.errors import error_response, internal_error_response
from opensop.api.hot_routes import HotRoutes
from opensop.config import Settings
from opensop.errors import ErrorCode, OpenSOPError
from opensop.runtime.runner import Runner
from opensop.service import Service

log = logging.getLogger("opensop.api")


def create_app(service: Service, settings: Settings, *, runner_concurrency: int = 0) -> FastAPI:
    """The HTTP app; with ``runner_concurrency`` > 0 it also runs the background engine
    (job runner) for as long as it serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runner_concurrency <= 0:
            yield
            return
        stop = asyncio.Event()
        runner = Runner(
            service.work,
            service.clock,
            concurrency=runner_concurrency,
            lease_seconds=settings.job_lease_seconds,
        )
        task = asyncio.create_task(runner.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    app = FastAPI(
        lifespan=lifespan,
        title="OpenSOP engine",
        version="0.1.0",
        description="Start, watch and advance Standard Operating Procedures over HTTP.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    # A trailing slash names no route: 404 in the envelope, not a bodiless 307 (both
    # /sop and /sop/ are routes of their own).
    app.router.redirect_slashes = False
    in_flight = InFlight()
    app.state.context = ApiContext(service=service, settings=settings, in_flight=in_flight)
    _install_error_handlers(app)
    app.include_router(routes_system.router)
    app.include_router(routes_tokens.router)
    app.include_router(routes_processes.router)
    app.include_router(routes_workers.router)
    app.include_router(routes_instances.router)
    return app


def serving_app(app: FastAPI) -> HotRoutes:
    """What the server serves: the hot routes in front of the app (``api/hot_routes.py``)."""
    context: ApiContext = app.state.context
    return HotRoutes(app, context.in_flight)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenSOPError)
    async def handle_known(request: Request, error: OpenSOPError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def handle_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            body = {"error": ErrorCode.NOT_FOUND.value, "message": "No such route."}
        elif error.status_code == 405:
            body = {
                "error": ErrorCode.METHOD_NOT_ALLOWED.value,
                "message": f"{request.method} is not allowed on {request.url.path}.",
            }
        else:
            body = {"error": ErrorCode.INVALID_PAYLOAD.value, "message": str(error.detail)}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def handle_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        details: list[dict[str, Any]] = [
            {
                "field": ".".join(str(part) for part in item["loc"][1:]) or str(item["loc"][0]),
                "code": "invalid_value",
                "message": item["msg"],
            }
            for item in error.errors()
        ]
        body = {
            "error": ErrorCode.INVALID_QUERY.value,
            "message": "A query or path parameter is invalid.",
            "details": details,
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def handle_gone(request: Request, error: ClientDisconnect) -> JSONResponse:
        return internal_error_response(request, error)  # a log line, not an error

    @app.exception_handler(Exception)
    async def handle_unexpected(request: Request, error: Exception) -> JSONResponse:
        return internal_error_response(request, error)
