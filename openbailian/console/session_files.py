"""Session files attached in the playground: the console receives the file and takes it through
the same steps as an SDK caller (lease, signed upload, AddFile), so it is processed, checked and
expired like any session file; the page then watches it become FILE_IS_READY."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from openbailian.console.web import Changing, ConsoleRoute, SignedIn, runtime_of
from openbailian.files.uploads import accept_upload
from openbailian.services import files as file_service

__all__ = ["router"]

router = APIRouter(prefix="/console/files", route_class=ConsoleRoute, include_in_schema=False)


def _stage(upload: UploadFile, folder: Path) -> tuple[Path, str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5(usedforsecurity=False)
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as handle:
        while block := upload.file.read(1 << 20):
            digest.update(block)
            handle.write(block)
    path = Path(handle.name)
    return path, digest.hexdigest(), path.stat().st_size


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while block := await asyncio.to_thread(handle.read, 1 << 20):
            yield block


@router.post("", status_code=201)
async def add_session_file(request: Request, user: Changing, file: UploadFile = File(...)) -> Response:
    runtime = runtime_of(request)
    files = runtime.files
    staged, md5, size = await asyncio.to_thread(_stage, file, runtime.settings.home / "incoming" / "console")
    try:
        lease = await file_service.apply_lease(
            files, user.workspace_id, category_id=file_service.CATEGORY_ID,
            category_type=file_service.CATEGORY_TYPE, file_name=file.filename or "",
            md5=md5, size_in_bytes=size, base_url=str(request.base_url),
        )
        await accept_upload(files, lease.lease_id, content_length=str(size), body=_chunks(staged))
        added = await file_service.add_file(
            files, user.workspace_id, lease_id=lease.lease_id, category_id=file_service.CATEGORY_ID,
            category_type=file_service.CATEGORY_TYPE,
        )
    finally:
        await asyncio.to_thread(staged.unlink, True)
    return JSONResponse({"file_id": added.id, "name": added.file_name, "status": added.status}, 201)


@router.get("/{file_id}")
async def session_file_status(request: Request, file_id: str, user: SignedIn) -> Response:
    info = await file_service.describe_file(runtime_of(request).files, user.workspace_id, file_id)
    return JSONResponse(
        {"file_id": info.id, "name": info.file_name, "status": info.status, "reason": info.failure_reason},
        headers={"Cache-Control": "no-store"},
    )


