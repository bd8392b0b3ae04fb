"""One catalogue of the engine's errors.

Every error the API can answer with has a stable code (``ErrorCode``), an HTTP status
and a default message, carried by its exception class. Only the API layer turns these
into HTTP responses; everything below it raises them.

    OpenSOPError
    ├── InvalidPayload            400 invalid_payload
    ├── Unauthorized              401 unauthorized
    ├── InvalidSignature          401 invalid_signature
    ├── Forbidden                 403 forbidden
    ├── NotFound                  404 not_found
    ├── MethodNotAllowed          405 method_not_allowed
    ├── CallbackAlreadyResolved   409 callback_already_resolved
    ├── VersionConflict           409 version_conflict
    ├── IdempotencyConflict       409 idempotency_conflict
    ├── LeaseLost                 409 lease_lost
    ├── PayloadTooLarge           413 payload_too_large
    ├── InvalidInputs             422 invalid_inputs
    ├── InvalidDefinition         422 invalid_definition
    ├── InvalidTransition         422 invalid_transition
    ├── InvalidQuery              422 invalid_query
    ├── InvalidCallbackPayload    422 invalid_callback_payload
    ├── RateLimited               429 rate_limited
    ├── TriggerMisconfigured      500 trigger_misconfigured
    └── InternalError             500 internal_error
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """The API's stable error codes; clients key on these strings."""

    INVALID_PAYLOAD = "invalid_payload"
    UNAUTHORIZED = "unauthorized"
    INVALID_SIGNATURE = "invalid_signature"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CALLBACK_ALREADY_RESOLVED = "callback_already_resolved"
    VERSION_CONFLICT = "version_conflict"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    LEASE_LOST = "lease_lost"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_INPUTS = "invalid_inputs"
    INVALID_DEFINITION = "invalid_definition"
    INVALID_TRANSITION = "invalid_transition"
    INVALID_QUERY = "invalid_query"
    INVALID_CALLBACK_PAYLOAD = "invalid_callback_payload"
    RATE_LIMITED = "rate_limited"
    TRIGGER_MISCONFIGURED = "trigger_misconfigured"
    INTERNAL_ERROR = "internal_error"


class OpenSOPError(Exception):
    """Base of every error with a stable code; ``details`` is a list of JSON objects."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "An unexpected error occurred."

    def __init__(
        self,
        message: str | None = None,
        details: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details: list[dict[str, Any]] = [dict(d) for d in details or ()]
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self.code), "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidPayload(OpenSOPError):
    code = ErrorCode.INVALID_PAYLOAD
    status = 400
    default_message = "The request body is not valid JSON."


class Unauthorized(OpenSOPError):
    code = ErrorCode.UNAUTHORIZED
    status = 401
    default_message = "A valid token is required (X-SOP-Token or Authorization: Bearer)."


class InvalidSignature(OpenSOPError):
    code = ErrorCode.INVALID_SIGNATURE
    status = 401
    default_message = "The request signature did not verify."


class Forbidden(OpenSOPError):
    code = ErrorCode.FORBIDDEN
    status = 403
    default_message = "This token lacks the scope needed for this action."


class NotFound(OpenSOPError):
    code = ErrorCode.NOT_FOUND
    status = 404
    default_message = "Not found."


class MethodNotAllowed(OpenSOPError):
    code = ErrorCode.METHOD_NOT_ALLOWED
    status = 405
    default_message = "This method is not allowed on this route."


class CallbackAlreadyResolved(OpenSOPError):
    code = ErrorCode.CALLBACK_ALREADY_RESOLVED
    status = 409
    default_message = "This callback has already been used."


class VersionConflict(OpenSOPError):
    code = ErrorCode.VERSION_CONFLICT
    status = 409
    default_message = "This process version is already published with different content."


class IdempotencyConflict(OpenSOPError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT
    status = 409
    default_message = "This Idempotency-Key was already used with a different request."


class LeaseLost(OpenSOPError):
    code = ErrorCode.LEASE_LOST
    status = 409
    default_message = "The worker lease expired or is held by another worker."


class PayloadTooLarge(OpenSOPError):
    code = ErrorCode.PAYLOAD_TOO_LARGE
    status = 413
    default_message = "The request body is larger than the configured limit."


class InvalidInputs(OpenSOPError):
    code = ErrorCode.INVALID_INPUTS
    status = 422
    default_message = "One or more values failed validation."


class InvalidDefinition(OpenSOPError):
    code = ErrorCode.INVALID_DEFINITION
    status = 422
    default_message = "The process definition is invalid."


class InvalidTransition(OpenSOPError):
    code = ErrorCode.INVALID_TRANSITION
    status = 422
    default_message = "This action is not allowed in the current state."


class InvalidQuery(OpenSOPError):
    code = ErrorCode.INVALID_QUERY
    status = 422
    default_message = "A query parameter is invalid."


class InvalidCallbackPayload(OpenSOPError):
    code = ErrorCode.INVALID_CALLBACK_PAYLOAD
    status = 422
    default_message = "The callback payload failed the step's declared outputs."


class RateLimited(OpenSOPError):
    code = ErrorCode.RATE_LIMITED
    status = 429
    default_message = "Too many requests."


class TriggerMisconfigured(OpenSOPError):
    code = ErrorCode.TRIGGER_MISCONFIGURED
    status = 500
    default_message = "The trigger's secret is not configured on this server."


class InternalError(OpenSOPError):
    code = ErrorCode.INTERNAL_ERROR
    status = 500
    default_message = "An internal error occurred."
