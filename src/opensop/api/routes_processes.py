"""Discovery, schemas and registration of process versions."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from opensop.api import serialize
from opensop.api.context import as_caller, authenticated, context_of, read_body
from opensop.auth import Scope
from opensop.errors import InvalidDefinition, InvalidPayload
from opensop.service import require

router = APIRouter(tags=["processes"])

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


@router.get("/sop/", summary="List the latest version of every process")
@router.get("/sop", include_in_schema=False)
async def discovery(request: Request) -> list[dict[str, Any]]:
    processes = await as_caller(request, context_of(request).service.list_processes)
    return [serialize.process_summary_json(listing) for listing in processes]


@router.post("/sop/processes/register", status_code=201, summary="Publish a process version")
async def register(request: Request) -> JSONResponse:
    # Authenticate before reading the upload: parsing multipart bodies is async work.
    principal = await authenticated(request)
    require(principal, Scope.REGISTER)
    data, filename = await _definition_upload(request)
    service = context_of(request).service
    registration = await run_in_threadpool(
        lambda: service.register(principal, data, filename=filename)
    )
    definition = registration.definition
    body = {
        "name": definition.name,
        "version": definition.version,
        "description": definition.description,
        "steps": len(definition.steps),
        "published_at": serialize.timestamp(registration.process.published_at),
        "schema_url": f"/sop/{definition.name}/schema?version={definition.version}",
        "created": registration.created,
    }
    return JSONResponse(body, status_code=201 if registration.created else 200)


@router.get("/sop/{name}/schema", summary="The full parsed definition")
async def schema(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    service = context_of(request).service
    record, _ = await as_caller(
        request, lambda principal: service.process_definition(principal, name, version)
    )
    return serialize.definition_json(record)


async def _definition_upload(request: Request) -> tuple[bytes, str]:
    """The file from a multipart `file` field, or a raw YAML/JSON body."""
    body = await read_body(request)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _multipart_file(request, body)
    if not body.strip():
        raise InvalidDefinition(
            "Send the process file as multipart field `file`, or as the raw body with "
            "Content-Type application/yaml or application/json."
        )
    filename = "upload.sop.json" if "json" in content_type else "upload.sop.yaml"
    if content_type and not ("json" in content_type or content_type.startswith(_YAML_TYPES)):
        filename = "upload.sop.yaml"
    return body, filename


async def _multipart_file(request: Request, body: bytes) -> tuple[bytes, str]:
    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    limit = context_of(request).settings.max_body_bytes
    try:
        form = await MultiPartParser(request.headers, chunks(), max_part_size=limit).parse()
    except MultiPartException as error:
        raise InvalidPayload(f"The multipart body is malformed: {error.message}") from None
    upload = form.get("file")
    if upload is None:
        raise InvalidDefinition("The multipart body has no `file` field.")
    if isinstance(upload, UploadFile):
        data = await upload.read()
        filename = upload.filename or "upload.sop.yaml"
        await upload.close()
    else:
        data, filename = upload.encode("utf-8"), "upload.sop.yaml"
    await form.close()
    return data, filename
