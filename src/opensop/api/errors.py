"""Error answers: the documented envelope for known errors, a request id for the rest."""

from __future__ import annotations

import logging
import uuid

from fastapi.responses import JSONResponse
from starlette.requests import Request

from opensop.errors import ErrorCode, OpenSOPError

log = logging.getLogger("opensop.api")


def error_response(error: OpenSOPError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status, headers=headers)


def internal_error_response(request: Request, error: Exception) -> JSONResponse:
    """500 with an id that finds the logged traceback; nothing internal reaches the caller."""
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
