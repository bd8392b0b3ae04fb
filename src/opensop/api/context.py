"""What every route needs: the service, the settings, the caller and a bounded body."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from opensop.auth import Principal
from opensop.config import Settings
from opensop.errors import InvalidPayload, PayloadTooLarge
from opensop.service import Service

T = TypeVar("T")


@dataclass(frozen=True)
class ApiContext:
    service: Service
    settings: Settings


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


def token_of(request: Request) -> str | None:
    token = request.headers.get("x-sop-token")
    if token:
        return token.strip()
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def as_caller(request: Request, action: Callable[[Principal], T]) -> T:
    """Authenticate and act in one worker-thread hop (the store calls block)."""
    service = context_of(request).service
    token = token_of(request)

    def run() -> T:
        return action(service.authenticate(token))

    return await run_in_threadpool(run)


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 past the configured limit (checked while reading)."""
    limit = context_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise InvalidPayload(f"The request body is not valid JSON: {reason}.") from None


async def read_json(request: Request, *, optional: bool = False) -> Any:
    body = await read_body(request)
    if optional and not body.strip():
        return None
    return parse_json(body)


async def read_json_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; anything else parses but has no fields (422 later)."""
    value = await read_json(request, optional=optional)
    return value if isinstance(value, dict) else {}
