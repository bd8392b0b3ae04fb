"""Token rotation: create (shown once), list (never the secret), revoke (at once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from opensop.api import serialize
from opensop.api.context import as_caller, context_of, json_object, read_body
from opensop.auth import Principal, Scope
from opensop.errors import InvalidInputs
from opensop.service import require

router = APIRouter(tags=["tokens"])


@router.post("/workspace/tokens", status_code=201, summary="Create a token (shown once)")
async def create_token(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    service = context_of(request).service

    def create(principal: Principal) -> Any:
        require(principal, Scope.ADMIN)
        name, scopes = _token_request(json_object(raw))
        return service.create_token(principal.workspace_id, name, scopes)

    new = await as_caller(request, create)
    return {**serialize.token_json(new.record), "token": new.secret}


def _token_request(body: dict[str, Any]) -> tuple[str, list[str] | None]:
    name = body.get("name")
    scopes = body.get("scopes")
    details = []
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        details.append(
            {
                "field": "name",
                "code": "required" if name is None else "type_mismatch",
                "expected": "string",
            }
        )
    if scopes is not None and (
        not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)
    ):
        details.append({"field": "scopes", "code": "type_mismatch", "expected": "string[]"})
    unknown = set(body) - {"name", "scopes"}
    details.extend({"field": key[:128], "code": "unknown_field"} for key in sorted(unknown))
    if isinstance(scopes, list) and not scopes:
        details.append(
            {
                "field": "scopes",
                "code": "invalid_format",
                "expected": "at least one scope",
                "message": "omit scopes for an admin token; an empty list grants nothing",
            }
        )
    if details:
        raise InvalidInputs("The token request failed validation.", details)
    return str(name), scopes


@router.get("/workspace/tokens", summary="List live tokens (never their secrets)")
async def list_tokens(request: Request) -> list[dict[str, Any]]:
    records = await as_caller(request, context_of(request).service.list_tokens)
    return [serialize.token_json(record) for record in records]


@router.delete("/workspace/tokens/{token_id}", status_code=204, summary="Revoke a token")
async def revoke_token(request: Request, token_id: str) -> Response:
    service = context_of(request).service
    await as_caller(request, lambda principal: service.revoke_token(principal, token_id))
    return Response(status_code=204)
