"""Receiving the one upload a lease allows: signed URL, declared size, matching MD5.

A refused upload leaves nothing behind: the bytes go to a temporary file that
is deleted on any failure, and the lease stays unused (it may be tried again
until it expires). Only a complete, matching upload is moved into the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
from sqlalchemy import update

from openbailian.errors import AccessDenied, Conflict, InvalidParameter, NotFound
from openbailian.files.store import LocalObjectStore
from openbailian.files.system import SessionFiles, upload_key
from openbailian.storage.files_models import FileUploadLease

__all__ = ["receive_upload", "accept_upload", "upload_key"]


async def receive_upload(
    files: SessionFiles,
    lease_id: str,
    *,
    expires: str | None,
    signature: str | None,
    extra: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
) -> FileUploadLease:
    files.signer.verify(lease_id, expires, signature, now=files.clock().timestamp())
    lease = await _lease(files, lease_id)
    expected_extra = files.signer.extra_header(lease.id, lease.workspace_id)
    if not extra or not hmac.compare_digest(extra, expected_extra):
        raise AccessDenied("The X-bailian-extra header is missing or does not match the lease's")
    return await _accept(files, lease, content_length, body)


async def accept_upload(
    files: SessionFiles, lease_id: str, *, content_length: str | None, body: AsyncIterator[bytes]
) -> FileUploadLease:
    """The upload of an in-process caller that applied for the lease itself (the console, the
    CLI): the same checks but no URL, which may be a presigned one of the object store."""
    return await _accept(files, await _lease(files, lease_id), content_length, body)


async def _lease(files: SessionFiles, lease_id: str) -> FileUploadLease:
    async with files.db.session() as session:
        lease = await session.get(FileUploadLease, lease_id)
    if lease is None:
        raise NotFound(f"Upload lease '{lease_id}' does not exist (or has expired and was removed)")
    return lease


async def _accept(
    files: SessionFiles, lease: FileUploadLease, content_length: str | None, body: AsyncIterator[bytes]
) -> FileUploadLease:
    now = files.clock()
    if _aware_ts(lease.expires_at) <= now.timestamp():
        raise AccessDenied("The upload lease has expired: apply for a new one with ApplyFileUploadLease")
    if content_length is not None and content_length.isdigit() and int(content_length) != lease.size_in_bytes:
        raise InvalidParameter(
            f"The upload is {content_length} bytes but the lease declared SizeInBytes "
            f"{lease.size_in_bytes}: upload exactly the declared file"
        )
    await _claim(files, lease)
    try:
        temporary = await _receive(files, lease, body)
    except BaseException:
        with anyio.CancelScope(shield=True):  # a gone client must not stop the cleanup
            await _release(files, lease.id)
        raise
    key = upload_key(lease)
    try:
        await asyncio.to_thread(_store, files, key, temporary)
        async with files.db.transaction() as session:
            await session.execute(
                update(FileUploadLease)
                .where(FileUploadLease.id == lease.id)
                .values(state="uploaded", object_key=key, uploaded_at=files.clock())
            )
    except BaseException:
        with anyio.CancelScope(shield=True):  # a gone client must not stop the cleanup
            temporary.unlink(missing_ok=True)
            await asyncio.to_thread(files.store.delete, key)
            await _release(files, lease.id)
        raise
    lease.state, lease.object_key = "uploaded", key
    return lease


async def _claim(files: SessionFiles, lease: FileUploadLease) -> None:
    async with files.db.transaction() as session:
        result = await session.execute(
            update(FileUploadLease)
            .where(FileUploadLease.id == lease.id, FileUploadLease.state == "pending")
            .values(state="uploading")
        )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # execute() is typed Result; an UPDATE gives a CursorResult
        async with files.db.session() as session:
            current = await session.get(FileUploadLease, lease.id)
        if current is not None and current.state == "uploading":
            raise Conflict("Another upload with this lease is in progress")
        raise Conflict("A file has already been uploaded with this lease: a lease accepts one upload")


async def _release(files: SessionFiles, lease_id: str) -> None:
    async with files.db.transaction() as session:
        await session.execute(
            update(FileUploadLease)
            .where(FileUploadLease.id == lease_id, FileUploadLease.state == "uploading")
            .values(state="pending")
        )


async def _receive(files: SessionFiles, lease: FileUploadLease, body: AsyncIterator[bytes]) -> Path:
    fd, name = tempfile.mkstemp(dir=files.incoming_dir, prefix=f"{lease.id}-")
    path = Path(name)
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in body:
                received += len(chunk)
                if received > lease.size_in_bytes:
                    raise InvalidParameter(
                        f"The upload is larger than the lease's SizeInBytes {lease.size_in_bytes}"
                    )
                digest.update(chunk)
                out.write(chunk)
        if received != lease.size_in_bytes:
            raise InvalidParameter(
                f"The upload is {received} bytes but the lease declared SizeInBytes {lease.size_in_bytes}"
            )
        if digest.hexdigest() != lease.md5.lower():
            raise InvalidParameter(
                f"The MD5 of the upload ({digest.hexdigest()}) does not match the lease's Md5 ({lease.md5})"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _store(files: SessionFiles, key: str, temporary: Path) -> None:
    if isinstance(files.store, LocalObjectStore):
        files.store.put_file(key, temporary)
        return
    try:
        with temporary.open("rb") as source:
            files.store.put(key, source)
    finally:
        temporary.unlink(missing_ok=True)


def _aware_ts(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
