"""What every route needs: the service, the settings, the caller and a bounded body."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from opensop import json_values
from opensop.auth import Principal, Scope
from opensop.config import Settings
from opensop.errors import InvalidPayload, PayloadTooLarge
from opensop.service import Service, require

T = TypeVar("T")


@dataclass
class InFlight:
    """HTTP requests being served now (only the event loop's thread touches it)."""

    count: int = 0


@dataclass(frozen=True)
class ApiContext:
    service: Service
    settings: Settings
    in_flight: InFlight = field(default_factory=InFlight)


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


async def as_caller(
    request: Request,
    action: Callable[[Principal], T],
    scope: Scope | None = None,
    *,
    writes: bool = False,
) -> T:
    """Authenticate, check the scope, then act, in one hop off the event loop.

    Authentication and the scope come first, so a caller without the right token learns
    nothing from body, path or query checks: those belong inside ``action``. (The
    service checks scopes again; it is the authority.) An action that ``writes`` runs
    where writes are cheapest (``Database.call_writing``: on SQLite, token check and all,
    as one unit of the group-commit writer, inline when it is the only request in
    flight); the others run in a worker thread.
    """
    context = context_of(request)
    service = context.service
    token = token_of(request)

    def run() -> T:
        principal = service.authenticate(token)
        if scope is not None:
            require(principal, scope)
        return action(principal)

    if writes:
        return await service.db.call_writing(
            run, alone=context.in_flight.count <= 1, offload=run_in_threadpool
        )
    return await run_in_threadpool(run)


async def authenticated(request: Request) -> Principal:
    """The caller, for routes that must do async work between authenticating and acting."""
    service = context_of(request).service
    token = token_of(request)
    return await run_in_threadpool(service.authenticate, token)


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 past the configured limit (checked while reading),
    but with 401 first when the caller has no valid token."""
    limit = context_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _too_large(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _too_large(request, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _too_large(request: Request, limit: int) -> NoReturn:
    await authenticated(request)  # a caller without a valid token learns nothing more
    raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")


def parse_json(body: bytes, *, optional: bool = False) -> Any:
    """The body as JSON (``None`` for an empty optional body); 400 when it is not JSON.

    Strings that no store can keep are refused here, the same on every store: unpaired
    UTF-16 surrogates (from ``\\ud800`` escapes) and NUL characters.
    """
    if optional and not body.strip():
        return None
    try:
        value = json_values.loads(body)
    except (ValueError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise InvalidPayload(f"The request body is not valid JSON: {reason}.") from None
    # Only \u escapes can produce such characters in a body that decoded as UTF-8.
    if b"\\u" in body and json_values.has_unstorable_text(value):
        raise InvalidPayload(
            "The request body contains a NUL character or an unpaired surrogate escape."
        )
    return value


def json_object(body: bytes, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; any other JSON value has no fields (422 later)."""
    value = parse_json(body, optional=optional)
    return value if isinstance(value, dict) else {}
