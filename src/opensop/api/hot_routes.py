"""A short way in for the busiest routes (start and submit), and the count of requests
in flight.

FastAPI's application layers (its telemetry check, Starlette's error middleware) and its
router (each route's pattern in turn, then the endpoint's dependencies) are a sizeable
share of a start's or a submit's Python time. ``HotRoutes`` sits in front of the whole
FastAPI app (``serving_app``): it matches the two busiest paths itself and calls the very
same endpoint functions (which take the request and their path parameters and build
their own response), answering errors with the same envelopes as the app's exception
handlers. Every other request, and any method or path these patterns do not match
exactly, goes to FastAPI as usual; the routes stay registered there too, for OpenAPI.

Being in front of everything, it also counts the HTTP requests being served
(``InFlight``): a write that is the only request in flight may run inline instead of
through the group-commit writer thread (``Database.call_writing``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from opensop.api import routes_instances
from opensop.api.context import InFlight, authenticated
from opensop.api.errors import error_response, internal_error_response
from opensop.errors import InvalidQuery, NotFound, OpenSOPError

Endpoint = Callable[..., Awaitable[Response]]

_SEGMENT: Final = r"[^/]+"  # what a Starlette path parameter matches

HOT_ROUTES: Final[tuple[tuple[str, re.Pattern[str], Endpoint], ...]] = (
    ("POST", re.compile(rf"/sop/(?P<name>{_SEGMENT})/start"), routes_instances.start),
    (
        "POST",
        re.compile(
            rf"/sop/(?P<name>{_SEGMENT})/(?P<instance_id>{_SEGMENT})"
            rf"/steps/(?P<step_id>{_SEGMENT})/submit"
        ),
        routes_instances.submit,
    ),
)


class HotRoutes:
    """ASGI app in front of the FastAPI ``app``: serves ``HOT_ROUTES`` directly, passes
    everything else (lifespan events too) on, and keeps ``in_flight`` up to date."""

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight.count += 1
        scope["app"] = self.app  # as Starlette does: endpoints find their context there
        try:
            method, path = scope["method"], scope["path"]
            if "\x00" in path or b"%00" in scope["query_string"]:
                # No name holds a NUL (PostgreSQL could not even compare one): no route,
                # and no query, can mean one.
                await _refuse_nul(scope, receive, send)
                return
            for route_method, pattern, endpoint in HOT_ROUTES:
                if method == route_method:
                    match = pattern.fullmatch(path)
                    if match is not None:
                        await _serve(endpoint, match.groupdict(), scope, receive, send)
                        return
            await self.app(scope, receive, send)
        finally:
            self.in_flight.count -= 1


async def _refuse_nul(scope: Scope, receive: Receive, send: Send) -> None:
    error: OpenSOPError
    if "\x00" in scope["path"]:
        error = NotFound("No such route.")
    else:
        error = InvalidQuery("A query parameter holds a NUL character.")
        try:  # the token first, as for every other check of a request
            await authenticated(Request(scope, receive))
        except OpenSOPError as unauthorized:
            error = unauthorized
    await error_response(error)(scope, receive, send)


async def _serve(
    endpoint: Endpoint, params: dict[str, Any], scope: Scope, receive: Receive, send: Send
) -> None:
    request = Request(scope, receive)
    try:
        response = await endpoint(request, **params)
    except OpenSOPError as error:
        response = error_response(error)
    except Exception as error:
        response = internal_error_response(request, error)
    await response(scope, receive, send)
