"""Session-file use cases shared by the management API and the CLI:
ApplyFileUploadLease, AddFile, DescribeFile, ListFile, DeleteFile, and the
check a call makes before it uses ``rag_options.session_file_ids``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from openbailian.errors import (
    Conflict,
    InvalidParameter,
    NotFound,
    WorkspaceAccessDenied,
)
from openbailian.files.formats import check_size, extension_of, rule_for
from openbailian.files.status import FileStatus
from openbailian.files.system import SessionFiles
from openbailian.services.lookup import get_in_workspace
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.files_models import FileUploadLease, SessionFile

__all__ = [
    "CATEGORY_ID",
    "CATEGORY_TYPE",
    "FILE_ID_PREFIX",
    "apply_lease",
    "add_file",
    "describe_file",
    "list_files",
    "delete_file",
    "usable_files",
    "file_view",
]

CATEGORY_ID = "default"
CATEGORY_TYPE = "SESSION_FILE"
FILE_ID_PREFIX = "file_session_"
MD5_PATTERN = re.compile(r"^[0-9a-fA-F]{32}$")


def check_category(category_id: str | None, category_type: str | None) -> None:
    if category_id != CATEGORY_ID:
        raise InvalidParameter(
            f"CategoryId must be '{CATEGORY_ID}' for session files, not '{category_id or ''}'"
        )
    if category_type != CATEGORY_TYPE:
        raise InvalidParameter(
            f"CategoryType must be '{CATEGORY_TYPE}' for session files, not '{category_type or ''}'"
        )


async def apply_lease(
    files: SessionFiles,
    workspace_id: str,
    *,
    category_id: str | None,
    category_type: str | None,
    file_name: str,
    md5: str,
    size_in_bytes: int,
    base_url: str,
) -> dict[str, Any]:
    """The ``Data`` of ApplyFileUploadLease: the lease id and how to upload."""
    check_category(category_id, category_type)
    file_name = file_name.strip()
    if not file_name or len(file_name) > 255 or "/" in file_name or "\\" in file_name:
        raise InvalidParameter("FileName must be a file name with its extension (no folders), at most 255 characters")
    check_size(file_name, size_in_bytes)
    if not MD5_PATTERN.match(md5):
        raise InvalidParameter("Md5 must be the 32 hexadecimal digits of the file's MD5")
    now = files.clock()
    expires_at = now + timedelta(minutes=files.settings.files_lease_minutes)
    lease_id = uuid.uuid4().hex
    async with files.db.transaction() as session:
        await ensure_workspace(session, workspace_id)
        session.add(
            FileUploadLease(
                id=lease_id,
                workspace_id=workspace_id,
                category_id=category_id or CATEGORY_ID,
                category_type=category_type or CATEGORY_TYPE,
                file_name=file_name,
                md5=md5.lower(),
                size_in_bytes=size_in_bytes,
                created_at=now,
                expires_at=expires_at,
            )
        )
    base = files.settings.files_public_url or base_url
    return dict(
        FileUploadLeaseId=lease_id,
        Type="HTTP",
        Param={
            "Method": "PUT",
            "Url": files.signer.url(base, lease_id, expires_at.timestamp()),
            "Headers": {
                "X-bailian-extra": files.signer.extra_header(lease_id, workspace_id),
                "Content-Type": "application/octet-stream",
            },
        },
        ExpireTime=_iso(expires_at),
    )


async def add_file(
    files: SessionFiles,
    workspace_id: str,
    *,
    lease_id: str,
    category_id: str | None,
    category_type: str | None,
) -> SessionFile:
    check_category(category_id, category_type)
    now = files.clock()
    async with files.db.transaction() as session:
        lease = await session.get(FileUploadLease, lease_id)
        if lease is None:
            used = await session.scalar(select(SessionFile).where(SessionFile.lease_id == lease_id))
            if used is not None and used.workspace_id == workspace_id:
                raise Conflict(
                    f"Lease '{lease_id}' was already used by AddFile (file '{used.id}'): "
                    "a lease is spent at once; apply for a new one"
                )
            raise NotFound(f"Upload lease '{lease_id}' does not exist (or has expired)")
        if lease.workspace_id != workspace_id:
            raise WorkspaceAccessDenied(
                f"Lease '{lease_id}' belongs to another workspace than '{workspace_id}'"
            )
        if lease.state != "uploaded" or lease.object_key is None or lease.uploaded_at is None:
            raise InvalidParameter(
                f"No file has been uploaded with lease '{lease_id}' yet: PUT the file to its Url first"
            )
        retention = timedelta(hours=files.settings.files_upload_retention_hours)
        if _aware(lease.uploaded_at) + retention <= now:
            raise InvalidParameter(
                f"The upload of lease '{lease_id}' was kept {files.settings.files_upload_retention_hours:g} "
                "hours and has expired: upload the file again"
            )
        # Spend the lease in the same transaction that creates the file.
        spent = await session.execute(
            delete(FileUploadLease).where(
                FileUploadLease.id == lease_id, FileUploadLease.state == "uploaded"
            )
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"Lease '{lease_id}' was already used by AddFile")
        row = SessionFile(
            id=f"{FILE_ID_PREFIX}{uuid.uuid4().hex}",
            workspace_id=workspace_id,
            lease_id=lease_id,
            category_id=lease.category_id,
            file_name=lease.file_name,
            file_type=extension_of(lease.file_name),
            kind=rule_for(lease.file_name).kind.value,
            size_in_bytes=lease.size_in_bytes,
            md5=lease.md5,
            object_key=lease.object_key,
            status=FileStatus.INIT.value,
            parser="openbailian",
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(days=files.settings.files_ttl_days),
        )
        session.add(row)
    files.schedule(row.id)
    return row


async def describe_file(files: SessionFiles, workspace_id: str, file_id: str) -> SessionFile:
    async with files.db.session() as session:
        return await get_in_workspace(
            session, SessionFile, file_id, workspace_id, missing=NotFound, label="File"
        )


async def list_files(
    files: SessionFiles,
    workspace_id: str,
    *,
    max_results: int = 20,
    next_token: str | None = None,
    file_name: str | None = None,
) -> tuple[list[SessionFile], str | None, int]:
    if not 1 <= max_results <= 200:
        raise InvalidParameter("MaxResults must be between 1 and 200")
    offset = 0
    if next_token:
        if not next_token.isdigit():
            raise InvalidParameter("NextToken is not one this server returned")
        offset = int(next_token)
    query = select(SessionFile).where(SessionFile.workspace_id == workspace_id)
    if file_name:
        query = query.where(SessionFile.file_name.contains(file_name, autoescape=True))
    async with files.db.session() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(
            await session.scalars(
                query.order_by(SessionFile.created_at.desc(), SessionFile.id).offset(offset).limit(max_results)
            )
        )
    following = offset + len(rows)
    return rows, (str(following) if following < total else None), total


async def delete_file(files: SessionFiles, workspace_id: str, file_id: str) -> None:
    """Remove the file at once: its row, its bytes and its index entries."""
    row = await describe_file(files, workspace_id, file_id)
    await files.cancel(file_id)
    await files.drop_data(row)
    async with files.db.transaction() as session:
        await session.execute(delete(SessionFile).where(SessionFile.id == file_id))


async def usable_files(
    files: SessionFiles, workspace_id: str, file_ids: object, *, max_files: int
) -> list[SessionFile]:
    """The files a call names in ``rag_options.session_file_ids``, each checked."""
    if not isinstance(file_ids, list) or not all(isinstance(i, str) for i in file_ids):
        raise InvalidParameter("rag_options.session_file_ids must be a list of file ids")
    file_ids = list(dict.fromkeys(file_ids))
    if len(file_ids) > max_files:
        raise InvalidParameter(
            f"rag_options.session_file_ids names {len(file_ids)} files; at most {max_files} are allowed"
        )
    for file_id in file_ids:
        if not file_id.startswith(FILE_ID_PREFIX):
            raise InvalidParameter(
                f"'{file_id}' is not a session file id: session file ids start with '{FILE_ID_PREFIX}' "
                "(get one with ApplyFileUploadLease, the upload, then AddFile)"
            )
    async with files.db.session() as session:
        rows = {r.id: r for r in await session.scalars(select(SessionFile).where(SessionFile.id.in_(file_ids)))}
    now = files.clock()
    result = []
    for file_id in file_ids:
        row = rows.get(file_id)
        if row is None:
            raise NotFound(f"Session file '{file_id}' does not exist")
        if row.workspace_id != workspace_id:
            raise WorkspaceAccessDenied(
                f"Session file '{file_id}' belongs to another workspace than the app's"
            )
        if row.status == FileStatus.FILE_EXPIRED or _aware(row.expires_at) <= now:
            raise InvalidParameter(f"Session file '{file_id}' has expired: upload it again")
        if row.status != FileStatus.FILE_IS_READY:
            reason = f" ({row.failure_reason})" if row.failure_reason else ""
            raise InvalidParameter(
                f"Session file '{file_id}' is not ready: its status is {row.status}{reason}; "
                "wait for FILE_IS_READY"
            )
        result.append(row)
    return result


def file_view(row: SessionFile) -> dict[str, Any]:
    """A file as the OpenAPI shows it (PascalCase)."""
    return {
        "FileId": row.id,
        "CategoryId": row.category_id,
        "CategoryType": CATEGORY_TYPE,
        "FileName": row.file_name,
        "FileType": row.file_type,
        "SizeInBytes": row.size_in_bytes,
        "Md5": row.md5,
        "Status": row.status,
        "FailureReason": row.failure_reason or None,
        "Parser": row.parser,
        "PageCount": row.page_count,
        "ChunkCount": row.chunk_count,
        "CreateTime": _iso(row.created_at),
        "UpdateTime": _iso(row.updated_at),
        "ExpireTime": _iso(row.expires_at),
        "Tags": [],
    }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return _aware(value).isoformat(timespec="seconds")

