"""Session files over HTTP, named as the Bailian OpenAPI operations.

``POST /manage/v1/files/{ApplyFileUploadLease,AddFile,DescribeFile,ListFile,DeleteFile}``
take JSON with PascalCase fields and answer in the OpenAPI envelope
``{"Success", "Code", "Message", "RequestId", "Status", "Data"}`` — errors too,
with the HTTP status of the error. ``PUT /manage/v1/files/upload/{lease}`` is
the signed upload URL a lease hands out: it is authenticated by its signature,
not by an API key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from openbailian.api.deps import CurrentCaller, get_runtime
from openbailian.api.errors import error_status_and_code, request_id_of
from openbailian.api.manage.views import file_view, lease_view
from openbailian.errors import InvalidParameter, NotFound
from openbailian.files.system import SessionFiles
from openbailian.files.uploads import receive_upload
from openbailian.services import files as file_service

__all__ = ["router"]

logger = logging.getLogger("openbailian.api")


def envelope(request: Request, data: Any, *, status: int = 200, code: str = "Success", message: str = "") -> JSONResponse:
    return JSONResponse(
        {
            "Success": status < 400,
            "Code": code,
            "Message": message,
            "RequestId": request_id_of(request),
            "Status": str(status),
            "Data": data,
        },
        status_code=status,
    )


class EnvelopeRoute(APIRoute):
    """Every error of these routes, authentication and validation included, in the envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def envelope_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:  # noqa: BLE001 - mapped like every other error (validation too)
                failure = error
            status, code, message = error_status_and_code(failure)
            if status >= 500:
                logger.error(
                    "request %s failed: %r", request_id_of(request), failure, exc_info=failure
                )
            return envelope(request, None, status=status, code=code, message=message)

        return envelope_errors


router = APIRouter(prefix="/manage/v1/files", tags=["session files"], route_class=EnvelopeRoute)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ApplyLeaseBody(_Body):
    CategoryId: str | None = None
    CategoryType: str | None = None
    FileName: str = Field(min_length=1)
    Md5: str
    SizeInBytes: int


class AddFileBody(_Body):
    LeaseId: str = Field(min_length=1)
    CategoryId: str | None = None
    CategoryType: str | None = None


class FileIdBody(_Body):
    FileId: str = Field(min_length=1)


class ListFileBody(_Body):
    CategoryId: str | None = None
    FileName: str | None = None
    MaxResults: int = 20
    NextToken: str | None = None


def _files(request: Request) -> SessionFiles:
    return get_runtime(request).files


@router.post("/ApplyFileUploadLease")
async def apply_file_upload_lease(body: ApplyLeaseBody, caller: CurrentCaller, request: Request) -> JSONResponse:
    file_service.check_session_category(body.CategoryId, body.CategoryType)
    lease = await file_service.apply_lease(
        _files(request),
        caller.workspace_id,
        category_id=body.CategoryId,
        category_type=body.CategoryType,
        file_name=body.FileName,
        md5=body.Md5,
        size_in_bytes=body.SizeInBytes,
        base_url=str(request.base_url),
    )
    return envelope(request, lease_view(lease))


@router.post("/AddFile")
async def add_file(body: AddFileBody, caller: CurrentCaller, request: Request) -> JSONResponse:
    file_service.check_session_category(body.CategoryId, body.CategoryType)
    row = await file_service.add_file(
        _files(request),
        caller.workspace_id,
        lease_id=body.LeaseId,
        category_id=body.CategoryId,
        category_type=body.CategoryType,
    )
    return envelope(request, {"FileId": row.id, "Parser": row.parser, "Status": row.status})


@router.post("/DescribeFile")
async def describe_file(body: FileIdBody, caller: CurrentCaller, request: Request) -> JSONResponse:
    row = await file_service.describe_file(_files(request), caller.workspace_id, body.FileId)
    if row.category_type != file_service.CATEGORY_TYPE:
        raise NotFound(f"Session file '{body.FileId}' does not exist")
    return envelope(request, file_view(row))


@router.post("/ListFile")
async def list_file(body: ListFileBody, caller: CurrentCaller, request: Request) -> JSONResponse:
    if body.CategoryId not in (None, file_service.CATEGORY_ID):
        raise InvalidParameter(f"CategoryId must be '{file_service.CATEGORY_ID}' for session files")
    page = await file_service.list_files(
        _files(request),
        caller.workspace_id,
        max_results=body.MaxResults,
        next_token=body.NextToken,
        file_name=body.FileName,
        category_type=file_service.CATEGORY_TYPE,
    )
    return envelope(
        request,
        {
            "FileList": [file_view(r) for r in page.files],
            "HasNext": page.next_token is not None,
            "NextToken": page.next_token,
            "MaxResults": body.MaxResults,
            "TotalCount": page.total,
        },
    )


@router.post("/DeleteFile")
async def delete_file(body: FileIdBody, caller: CurrentCaller, request: Request) -> JSONResponse:
    await file_service.delete_file(_files(request), caller.workspace_id, body.FileId)
    return envelope(request, {"FileId": body.FileId})


@router.put("/upload/{lease_id}")
async def upload(lease_id: str, request: Request) -> JSONResponse:
    lease = await receive_upload(
        _files(request),
        lease_id,
        expires=request.query_params.get("Expires"),
        signature=request.query_params.get("Signature"),
        extra=request.headers.get("x-bailian-extra"),
        content_length=request.headers.get("content-length"),
        body=request.stream(),
    )
    return envelope(
        request,
        {"FileUploadLeaseId": lease.id, "SizeInBytes": lease.size_in_bytes, "Md5": lease.md5},
        message="File uploaded successfully.",
    )


@router.get("/download/{file_id}/{what}", response_model=None)
async def download(file_id: str, what: str, request: Request) -> Response:
    """A signed link of DescribeFile (OriginFileDownloadUrl, ParseResultDownloadUrl):
    authenticated by its signature, valid until its Expires."""
    name, content, media = await file_service.open_download(
        _files(request), file_id, what,
        expires=request.query_params.get("Expires"), signature=request.query_params.get("Signature"),
    )
    disposition = f"attachment; filename*=UTF-8''{quote(name)}"
    return Response(content, media_type=media, headers={"Content-Disposition": disposition})
