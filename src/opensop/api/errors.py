"""Error answers: the documented envelope for known errors, a request id for the rest."""

from __future__ import annotations

import logging
import uuid

from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect, Request

from opensop.errors import ErrorCode, InvalidPayload, OpenSOPError

log = logging.getLogger("opensop.api")


def error_response(error: OpenSOPError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status, headers=headers)


def internal_error_response(request: Request, error: Exception) -> JSONResponse:
    """500 with an id that finds the logged traceback; nothing internal reaches the caller.

    A client that went away while sending its body is no internal error: a line in the
    log, and an answer nobody reads."""
    if isinstance(error, ClientDisconnect):
        log.info("client went away during %s %s", request.method, request.url.path)
        return error_response(InvalidPayload("The client closed the connection mid-body."))
    request_id = uuid.uuid4().hex
    log.error(
        "internal error (request %s) on %s %s",
        request_id,
        request.method,
        request.url.path,
        exc_info=error,
    )
    body = {
        "error": ErrorCode.INTERNAL_ERROR.value,
        "message": f"An internal error occurred (request {request_id}).",
        "request_id": request_id,
    }
    return JSONResponse(body, status_code=500)
