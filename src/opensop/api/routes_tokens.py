"""Token rotation: create (shown once), list (never the secret), revoke (at once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from opensop.api import serialize
from opensop.api.context import as_caller, context_of, read_json_object
from opensop.auth import Principal, Scope
from opensop.errors import InvalidInputs
from opensop.service import require

router = APIRouter(tags=["tokens"])


@router.post("/workspace/tokens", status_code=201, summary="Create a token (shown once)")
async def create_token(request: Request) -> dict[str, Any]:
    body = await read_json_object(request)
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
    if details:
        raise InvalidInputs("The token request failed validation.", details)
    service = context_of(request).service

    def create(principal: Principal) -> Any:
        require(principal, Scope.ADMIN)
        return service.create_token(principal.workspace_id, str(name), scopes)

    new = await as_caller(request, create)
    return {**serialize.token_json(new.record), "token": new.secret}


@router.get("/workspace/tokens", summary="List live tokens (never their secrets)")
async def list_tokens(request: Request) -> list[dict[str, Any]]:
    records = await as_caller(request, context_of(request).service.list_tokens)
    return [serialize.token_json(record) for record in records]


@router.delete("/workspace/tokens/{token_id}", status_code=204, summary="Revoke a token")
async def revoke_token(request: Request, token_id: str) -> Response:
    service = context_of(request).service
    await as_caller(request, lambda principal: service.revoke_token(principal, token_id))
    return Response(status_code=204)
