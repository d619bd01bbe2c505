"""The data center family of the Bailian OpenAPI (``{RequestId, Success, Code, Message,
Status, Data}``), over ``services/files.py``:

ApplyFileUploadLease (``CategoryType`` ``UNSTRUCTURED``, the default: a data-center
document; ``SESSION_FILE``: a session file), the upload to the lease's URL, AddFile,
DescribeFile, ListFile, DeleteFile, UpdateFileTag, AddCategory, ListCategory, DeleteCategory.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from openbailian.api.deps import RuntimeDep
from openbailian.api.openapi.auth import OpenApiCaller
from openbailian.api.openapi.envelopes import Envelope, ok
from openbailian.api.openapi.params import ParamsDep
from openbailian.api.openapi.routing import WORKSPACE, family_router
from openbailian.errors import InvalidParameter
from openbailian.files.system import SessionFiles
from openbailian.runtime import Runtime
from openbailian.services import files as file_service

__all__ = ["router", "bailian_time"]

router = family_router(Envelope.DATACENTER, "data center (files, categories)")

CHINA = timezone(timedelta(hours=8))
FILE = WORKSPACE + "/datacenter/file"
CATEGORY = WORKSPACE + "/datacenter/category"


def bailian_time(value: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in UTC+8, as the console and the SDK show it."""
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def _files(runtime: Runtime) -> SessionFiles:
    return runtime.files


def _data(request: Request, data: Any) -> JSONResponse:
    return ok(request, Envelope.DATACENTER, data)


def _file(files: SessionFiles, file: file_service.FileInfo, request: Request) -> dict[str, Any]:
    links = file_service.download_links(files, file, str(request.base_url))
    return {
        "FileId": file.id,
        "CategoryId": file.category_id,
        "CategoryType": file.category_type,
        "FileName": file.file_name,
        "FileType": file.file_type,
        "SizeInBytes": file.size_in_bytes,
        "Status": file.status,
        "Parser": file.parser,
        "ParseErrorMessage": file.failure_reason or None,
        "CreateTime": bailian_time(file.created_at),
        "Tags": list(file.tags),
        "OriginFileDownloadUrl": links.origin,
        "ParseResultDownloadUrl": links.parsed,
    }


def _category(category: file_service.Category) -> dict[str, Any]:
    return {
        "CategoryId": category.id,
        "CategoryName": category.name,
        "CategoryType": category.category_type,
        "ParentCategoryId": category.parent_id,
        "IsDefault": category.is_default,
    }


@router.post(CATEGORY + "/{CategoryId}")
async def apply_file_upload_lease(
    request: Request, CategoryId: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    size = params.integer("SizeInBytes", required=True, minimum=1)
    assert size is not None
    lease = await file_service.apply_lease(
        _files(runtime), caller.workspace_id,
        category_id=CategoryId,
        category_type=params.choice("CategoryType", file_service.CATEGORY_TYPES),
        file_name=params.required_text("FileName", max_length=255),
        md5=params.required_text("Md5", max_length=64),
        size_in_bytes=size,
        base_url=str(request.base_url),
    )
    params.boolean("UseInternalEndpoint")  # one endpoint here; only checked
    return _data(request, {
        "FileUploadLeaseId": lease.lease_id,
        "Type": "HTTP",
        "Param": {"Method": lease.method, "Url": lease.url, "Headers": dict(lease.headers)},
    })


@router.put(FILE)
async def add_file(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    lease_id = params.required_text("LeaseId", max_length=64)
    parser = params.required_text("Parser", max_length=64)
    category_id = params.required_text("CategoryId", max_length=64)
    tags = params.json_list("Tags", max_items=file_service.MAX_TAGS)
    params.json_object("ParserConfig")  # parsing is the server's own; only checked
    if params.text("OriginalFileUrl", allow_empty=False):
        raise InvalidParameter("OriginalFileUrl is not supported: upload the file to the lease's Url")
    file = await file_service.add_file(
        _files(runtime), caller.workspace_id, lease_id=lease_id, category_id=category_id,
        category_type=params.choice("CategoryType", file_service.CATEGORY_TYPES),
        parser=parser, tags=tags,
    )
    return _data(request, {"FileId": file.id, "Parser": file.parser})


@router.get(FILE + "/{FileId}/")
async def describe_file(request: Request, FileId: str, caller: OpenApiCaller, runtime: RuntimeDep) -> JSONResponse:
    files = _files(runtime)
    file = await file_service.describe_file(files, caller.workspace_id, FileId)
    return _data(request, _file(files, file, request))


@router.put(FILE + "/{FileId}")
async def update_file_tag(
    request: Request, FileId: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    tags = params.json_list("Tags", max_items=file_service.MAX_TAGS) or []
    file = await file_service.update_tags(_files(runtime), caller.workspace_id, FileId, tags)
    return _data(request, {"FileId": file.id})


@router.get(WORKSPACE + "/datacenter/files")
async def list_file(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    files = _files(runtime)
    max_results = params.integer("MaxResults", default=20, minimum=1, maximum=200)
    assert max_results is not None
    page = await file_service.list_files(
        files, caller.workspace_id,
        category_id=params.required_text("CategoryId", max_length=64),
        file_ids=params.json_list("FileIds", max_items=200),
        file_name=params.text("FileName", allow_empty=False, max_length=255),
        max_results=max_results,
        next_token=params.text("NextToken", allow_empty=False),
    )
    return _data(request, {
        "FileList": [_file(files, f, request) for f in page.files],
        "HasNext": page.next_token is not None,
        "MaxResults": max_results,
        "NextToken": page.next_token,
        "TotalCount": page.total,
    })


@router.delete(FILE + "/{FileId}/")
async def delete_file(request: Request, FileId: str, caller: OpenApiCaller, runtime: RuntimeDep) -> JSONResponse:
    await file_service.delete_file(_files(runtime), caller.workspace_id, FileId)
    return _data(request, {"FileId": FileId})


@router.post(CATEGORY + "/")
async def add_category(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    name = params.required_text("CategoryName", max_length=64)
    category_type = params.required_text("CategoryType", max_length=32)
    parent = params.text("ParentCategoryId", allow_empty=False, max_length=64)
    async with runtime.db.transaction() as session:
        category = await file_service.add_category(
            session, caller.workspace_id, name=name, category_type=category_type, parent_id=parent
        )
    return _data(request, {"CategoryId": category.id, "CategoryName": category.name})


@router.post(WORKSPACE + "/datacenter/categories")
async def list_category(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    params.choice("CategoryType", [file_service.DATACENTER_TYPE], required=True)
    # As Bailian: under 1 means the default 20, over 200 means 200.
    asked = params.integer("MaxResults", default=20) or 20
    max_results = 20 if asked < 1 else min(asked, 200)
    async with runtime.db.session() as session:
        categories, next_token, total = await file_service.list_categories(
            session, caller.workspace_id,
            name=params.text("CategoryName", allow_empty=False, max_length=64),
            parent_id=params.text("ParentCategoryId", allow_empty=False, max_length=64),
            max_results=max_results,
            next_token=params.text("NextToken", allow_empty=False),
        )
    return _data(request, {
        "CategoryList": [_category(c) for c in categories],
        "HasNext": next_token is not None,
        "MaxResults": max_results,
        "NextToken": next_token,
        "TotalCount": total,
    })


@router.delete(CATEGORY + "/{CategoryId}/")
async def delete_category(request: Request, CategoryId: str, caller: OpenApiCaller, runtime: RuntimeDep) -> JSONResponse:
    async with runtime.db.transaction() as session:
        await file_service.delete_category(session, caller.workspace_id, CategoryId)
    return _data(request, {"CategoryId": CategoryId})
