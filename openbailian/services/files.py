"""File use cases shared by the management API, the OpenAPI and the CLI:
ApplyFileUploadLease, AddFile, DescribeFile, ListFile, DeleteFile, the data-center
categories, and the check a call makes before it uses ``rag_options.session_file_ids``.

A lease's ``CategoryType`` makes either a session file (``SESSION_FILE``: id
``file_session_…``, used by ``rag_options.session_file_ids``, expires) or a
data-center document (``UNSTRUCTURED``, the default: id ``file_…``, kept in a category
until deleted, imported into knowledge bases by CreateIndex / SubmitIndexJob). Both
go through the same processing (safety check, parsing, content check).
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import (
    Conflict,
    InvalidParameter,
    NotFound,
)
from openbailian.files.formats import FileKind, check_size, extension_of, rule_for
from openbailian.files.s3 import UPLOAD_CONTENT_TYPE, S3ObjectStore
from openbailian.files.status import FAILED, FileStatus
from openbailian.files.system import SessionFiles, upload_key
from openbailian.services.lookup import check_owner, get_in_workspace
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.files_models import DataCenterCategory, FileUploadLease, SessionFile

__all__ = [
    "CATEGORY_ID",
    "CATEGORY_TYPE",
    "CATEGORY_TYPES",
    "DATACENTER_TYPE",
    "MAX_TAGS",
    "FILE_ID_PREFIX",
    "DOCUMENT_ID_PREFIX",
    "UploadLease",
    "FileInfo",
    "FilePage",
    "Category",
    "check_session_category",
    "apply_lease",
    "add_file",
    "describe_file",
    "update_tags",
    "list_files",
    "delete_file",
    "datacenter_documents",
    "add_category",
    "list_categories",
    "delete_category",
    "parse_result",
    "download_links",
    "DownloadLinks",
    "open_download",
    "usable_files",
]

CATEGORY_ID = "default"
CATEGORY_TYPE = "SESSION_FILE"
DATACENTER_TYPE = "UNSTRUCTURED"
CATEGORY_TYPES = (DATACENTER_TYPE, CATEGORY_TYPE)
FILE_ID_PREFIX = "file_session_"
DOCUMENT_ID_PREFIX = "file_"
CATEGORY_ID_PREFIX = "cate_"
MD5_PATTERN = re.compile(r"^[0-9a-fA-F]{32}$")
CATEGORY_NAME = re.compile(r"^[\w:.\-]{1,20}$")
MAX_TAGS = 32
# A data-center document is kept until it is deleted.
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class UploadLease:
    """How to upload the one file a lease allows."""

    lease_id: str
    category_type: str
    method: str
    url: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class FileInfo:
    id: str
    workspace_id: str
    category_id: str
    category_type: str
    file_name: str
    file_type: str
    size_in_bytes: int
    md5: str
    # A session file's status; a data-center document's as the data center names it
    # (INIT, PARSING, PARSE_SUCCESS, PARSE_FAILED).
    status: str
    failure_reason: str
    parser: str
    page_count: int
    chunk_count: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    has_original: bool
    has_parse_result: bool
    tags: list[str] = field(default_factory=list)

    @property
    def is_document(self) -> bool:
        return self.category_type == DATACENTER_TYPE

    @classmethod
    def of(cls, row: SessionFile) -> FileInfo:
        document = row.category_type == DATACENTER_TYPE
        ready = row.status == FileStatus.FILE_IS_READY
        return cls(
            id=row.id, workspace_id=row.workspace_id, category_id=row.category_id,
            category_type=row.category_type or CATEGORY_TYPE, file_name=row.file_name, file_type=row.file_type,
            size_in_bytes=row.size_in_bytes, md5=row.md5,
            status=_document_status(row.status) if document else row.status,
            failure_reason=row.failure_reason or "", parser=row.parser, page_count=row.page_count or 0,
            chunk_count=row.chunk_count or 0, created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),
            expires_at=None if document else _aware(row.expires_at),
            has_original=row.object_key is not None, has_parse_result=ready and row.index_ref is not None,
            tags=list(row.tags or []),
        )


def _document_status(status: str) -> str:
    """The processing status as the data center shows a document's."""
    if status == FileStatus.INIT:
        return "INIT"
    if status == FileStatus.FILE_IS_READY:
        return "PARSE_SUCCESS"
    if status in FAILED or status in (FileStatus.FILE_EXPIRED, FileStatus.INDEX_DELETED):
        return "PARSE_FAILED"
    return "PARSING"


@dataclass(frozen=True, slots=True)
class FilePage:
    files: list[FileInfo]
    next_token: str | None
    total: int
    max_results: int


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    name: str
    category_type: str
    parent_id: str | None
    is_default: bool


DEFAULT_CATEGORY = Category(CATEGORY_ID, "default", DATACENTER_TYPE, None, True)


def check_session_category(category_id: str | None, category_type: str | None) -> None:
    """The session-file routes of the management API take only ``default`` / ``SESSION_FILE``."""
    if category_id != CATEGORY_ID:
        raise InvalidParameter(
            f"CategoryId must be '{CATEGORY_ID}' for session files, not '{category_id or ''}'"
        )
    if category_type != CATEGORY_TYPE:
        raise InvalidParameter(
            f"CategoryType must be '{CATEGORY_TYPE}' for session files, not '{category_type or ''}'"
        )


def _category_type(category_type: str | None) -> str:
    value = category_type or DATACENTER_TYPE
    if value not in CATEGORY_TYPES:
        raise InvalidParameter(f"CategoryType must be one of {', '.join(CATEGORY_TYPES)}, not '{value}'")
    return value


async def _check_category(session: AsyncSession, workspace_id: str, category_id: str | None, kind: str) -> str:
    category_id = category_id or CATEGORY_ID
    if kind == CATEGORY_TYPE:
        if category_id != CATEGORY_ID:
            raise InvalidParameter(f"CategoryId must be '{CATEGORY_ID}' for session files, not '{category_id}'")
        return category_id
    await get_category(session, workspace_id, category_id)
    return category_id


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
) -> UploadLease:
    """A lease to upload one file of this name, size and MD5 (then AddFile it)."""
    kind = _category_type(category_type)
    file_name = (file_name or "").strip()
    if not file_name or len(file_name) > 255 or "/" in file_name or "\\" in file_name:
        raise InvalidParameter("FileName must be a file name with its extension (no folders), at most 255 characters")
    rule = check_size(file_name, size_in_bytes)
    if kind == DATACENTER_TYPE and rule.kind not in (FileKind.DOCUMENT, FileKind.IMAGE):
        raise InvalidParameter(
            f"A data-center document is a document or an image, not {rule.kind.value} "
            "(audio and video are session files: CategoryType=SESSION_FILE)"
        )
    if not MD5_PATTERN.match(md5):
        raise InvalidParameter("Md5 must be the 32 hexadecimal digits of the file's MD5")
    now = files.clock()
    expires_at = now + timedelta(minutes=files.settings.files_lease_minutes)
    lease_id = uuid.uuid4().hex
    async with files.db.transaction() as session:
        await ensure_workspace(session, workspace_id)
        category_id = await _check_category(session, workspace_id, category_id, kind)
        session.add(
            FileUploadLease(
                id=lease_id,
                workspace_id=workspace_id,
                category_id=category_id,
                category_type=kind,
                file_name=file_name,
                md5=md5.lower(),
                size_in_bytes=size_in_bytes,
                created_at=now,
                expires_at=expires_at,
            )
        )
    headers = {
        "X-bailian-extra": files.signer.extra_header(lease_id, workspace_id),
        "Content-Type": UPLOAD_CONTENT_TYPE,
    }
    if isinstance(files.store, S3ObjectStore):  # the bytes go straight to the bucket
        key = upload_key(FileUploadLease(id=lease_id, workspace_id=workspace_id, file_name=file_name))
        lifetime = int(files.settings.files_lease_minutes * 60)
        url = await asyncio.to_thread(files.store.presign_put, key, expires_in=lifetime)
    else:
        url = files.signer.url(files.settings.files_public_url or base_url, lease_id, expires_at.timestamp())
    return UploadLease(
        lease_id=lease_id, category_type=kind, method="PUT", url=url, headers=headers,
        expires_at=_aware(expires_at),
    )


async def add_file(
    files: SessionFiles,
    workspace_id: str,
    *,
    lease_id: str,
    category_id: str | None,
    category_type: str | None,
    parser: str | None = None,
    tags: Sequence[str] | None = None,
) -> FileInfo:
    """The file made from an uploaded lease; its processing starts at once."""
    kind = _category_type(category_type)
    tag_list = _clean_tags(tags)
    if not isinstance(lease_id, str) or not lease_id:
        raise InvalidParameter("LeaseId is required")
    if isinstance(files.store, S3ObjectStore):
        await _adopt_presigned_upload(files, files.store, workspace_id, lease_id)
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
        if lease is None or lease.workspace_id != workspace_id:  # another's: as if missing
            raise NotFound(f"Upload lease '{lease_id}' does not exist (or has expired)")
        if lease.category_type != kind or lease.category_id != (category_id or CATEGORY_ID):
            raise InvalidParameter(
                f"Lease '{lease_id}' was applied for with CategoryId '{lease.category_id}' and CategoryType "
                f"'{lease.category_type}': AddFile must name the same"
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
        if spent.rowcount != 1:  # type: ignore[attr-defined]  # execute() is typed Result; a DELETE gives a CursorResult
            raise Conflict(f"Lease '{lease_id}' was already used by AddFile")
        document = kind == DATACENTER_TYPE
        row = SessionFile(
            id=f"{DOCUMENT_ID_PREFIX if document else FILE_ID_PREFIX}{uuid.uuid4().hex}",
            workspace_id=workspace_id,
            lease_id=lease_id,
            category_id=lease.category_id,
            category_type=kind,
            tags=tag_list or None,
            file_name=lease.file_name,
            file_type=extension_of(lease.file_name),
            kind=rule_for(lease.file_name).kind.value,
            size_in_bytes=lease.size_in_bytes,
            md5=lease.md5,
            object_key=lease.object_key,
            status=FileStatus.INIT.value,
            parser=_parser(parser, document),
            created_at=now,
            updated_at=now,
            expires_at=NEVER if document else now + timedelta(days=files.settings.files_ttl_days),
        )
        session.add(row)
    files.schedule(row.id)
    return FileInfo.of(row)


async def _adopt_presigned_upload(files: SessionFiles, store: S3ObjectStore, workspace_id: str, lease_id: str) -> None:
    """Mark a pending lease uploaded when its presigned PUT put the declared bytes in the bucket.

    Other bytes are removed (the lease stays pending: the right file may be uploaded
    again until it expires). Anything else is left to ``add_file``'s own checks.
    """
    async with files.db.session() as session:
        lease = await session.get(FileUploadLease, lease_id)
    if lease is None or lease.workspace_id != workspace_id or lease.state != "pending":
        return
    key = upload_key(lease)
    stored = await asyncio.to_thread(store.stat, key)
    if stored is None:
        return
    if stored.size != lease.size_in_bytes:
        await asyncio.to_thread(store.delete, key)
        raise InvalidParameter(
            f"The uploaded file is {stored.size} bytes but the lease declared SizeInBytes "
            f"{lease.size_in_bytes}: it was removed; upload exactly the declared file"
        )
    md5 = stored.md5 or await asyncio.to_thread(store.md5, key)
    if md5 != lease.md5.lower():
        await asyncio.to_thread(store.delete, key)
        raise InvalidParameter(
            f"The MD5 of the uploaded file ({md5}) does not match the lease's Md5 ({lease.md5}): "
            "it was removed; upload exactly the declared file"
        )
    async with files.db.transaction() as session:
        await session.execute(
            update(FileUploadLease)
            .where(FileUploadLease.id == lease_id, FileUploadLease.state == "pending")
            .values(state="uploaded", object_key=key, uploaded_at=files.clock())
        )


def _parser(parser: str | None, document: bool) -> str:
    """Every file is parsed by this server's parsers; the name asked for is kept (as Bailian shows it)."""
    if parser is None or parser == "":
        return "DASHSCOPE_DOCMIND" if document else "openbailian"
    if not isinstance(parser, str) or len(parser) > 64:
        raise InvalidParameter("Parser is a parser name such as DASHSCOPE_DOCMIND")
    return parser


def _clean_tags(tags: Sequence[str] | None) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) and 0 < len(t.strip()) <= 64 for t in tags):
        raise InvalidParameter("Tags is a list of strings of 1-64 characters")
    cleaned = list(dict.fromkeys(t.strip() for t in tags))
    if len(cleaned) > MAX_TAGS:
        raise InvalidParameter(f"A file has at most {MAX_TAGS} tags")
    return cleaned


async def _file_row(session: AsyncSession, workspace_id: str, file_id: str) -> SessionFile:
    return await get_in_workspace(session, SessionFile, file_id, workspace_id, missing=NotFound, label="File")


async def describe_file(files: SessionFiles, workspace_id: str, file_id: str) -> FileInfo:
    async with files.db.session() as session:
        return FileInfo.of(await _file_row(session, workspace_id, file_id))


async def update_tags(files: SessionFiles, workspace_id: str, file_id: str, tags: Sequence[str]) -> FileInfo:
    """Replace the file's tags (knowledge bases importing it later copy them)."""
    cleaned = _clean_tags(tags)
    async with files.db.transaction() as session:
        row = await _file_row(session, workspace_id, file_id)
        row.tags = cleaned or None
        return FileInfo.of(row)


async def list_files(
    files: SessionFiles,
    workspace_id: str,
    *,
    max_results: int = 20,
    next_token: str | None = None,
    file_name: str | None = None,
    category_id: str | None = None,
    category_type: str | None = None,
    file_ids: Sequence[str] | None = None,
) -> FilePage:
    """Files of the workspace, newest first, ``max_results`` at a time; ``category_id`` /
    ``category_type`` / ``file_ids`` / a part of the ``file_name`` narrow the list."""
    if not 1 <= max_results <= 200:
        raise InvalidParameter("MaxResults must be between 1 and 200")
    offset = _offset(next_token)
    query = select(SessionFile).where(SessionFile.workspace_id == workspace_id)
    if file_name:
        query = query.where(SessionFile.file_name.contains(file_name, autoescape=True))
    if category_type is not None:
        query = query.where(SessionFile.category_type == _category_type(category_type))
    if file_ids is not None:
        if not isinstance(file_ids, list | tuple) or not all(isinstance(i, str) for i in file_ids):
            raise InvalidParameter("FileIds is a list of file ids")
        query = query.where(SessionFile.id.in_(list(file_ids)))
    async with files.db.session() as session:
        if category_id is not None:
            await get_category(session, workspace_id, category_id)
            query = query.where(SessionFile.category_id == category_id)
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(
            await session.scalars(
                query.order_by(SessionFile.created_at.desc(), SessionFile.id).offset(offset).limit(max_results)
            )
        )
    following = offset + len(rows)
    next_page = str(following) if following < total else None
    return FilePage([FileInfo.of(r) for r in rows], next_page, total, max_results)


async def delete_file(files: SessionFiles, workspace_id: str, file_id: str) -> None:
    """Remove the file at once: its row, its bytes and its index entries. (The copies a
    knowledge base imported from a data-center document are the base's, and stay.)"""
    async with files.db.session() as session:
        row = await _file_row(session, workspace_id, file_id)
    await files.cancel(file_id)
    await files.drop_data(row)
    async with files.db.transaction() as session:
        await session.execute(delete(SessionFile).where(SessionFile.id == file_id))


async def datacenter_documents(
    session: AsyncSession,
    workspace_id: str,
    *,
    document_ids: Sequence[str] = (),
    category_ids: Sequence[str] = (),
) -> list[SessionFile]:
    """The data-center documents named, and every document of the categories named; an
    unknown id (or one of another workspace, or a session file) is not found."""
    rows: dict[str, SessionFile] = {}
    for document_id in document_ids:
        row = await session.get(SessionFile, document_id) if isinstance(document_id, str) else None
        if row is None or row.workspace_id != workspace_id or row.category_type != DATACENTER_TYPE:
            raise NotFound(f"Document '{document_id}' does not exist in the data center of workspace '{workspace_id}'")
        rows[row.id] = row
    for category_id in category_ids:
        await get_category(session, workspace_id, category_id)
        found = await session.scalars(
            select(SessionFile)
            .where(
                SessionFile.workspace_id == workspace_id,
                SessionFile.category_type == DATACENTER_TYPE,
                SessionFile.category_id == category_id,
            )
            .order_by(SessionFile.created_at)
        )
        rows.update((row.id, row) for row in found)
    return list(rows.values())


async def parse_result(files: SessionFiles, workspace_id: str, file_id: str) -> str:
    """What parsing found in the file (its passages, in order); a file not parsed yet is a conflict."""
    info = await describe_file(files, workspace_id, file_id)
    async with files.db.session() as session:
        row = await _file_row(session, workspace_id, file_id)
    if not info.has_parse_result or row.index_ref is None:
        raise Conflict(f"File '{file_id}' has no parse result: its status is {info.status}")
    return "\n\n".join(await files.index.texts(row.index_ref))


DOWNLOAD_LINK_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class DownloadLinks:
    """Signed links, valid for an hour, to a file's bytes and to what parsing found in it."""

    origin: str | None
    parsed: str | None
    expires_at: datetime


def download_links(files: SessionFiles, file: FileInfo, base_url: str) -> DownloadLinks:
    base = files.settings.files_public_url or base_url
    expires_at = files.clock() + timedelta(seconds=DOWNLOAD_LINK_SECONDS)
    stamp = expires_at.timestamp()
    return DownloadLinks(
        origin=files.signer.download_url(base, file.id, "origin", stamp) if file.has_original else None,
        parsed=files.signer.download_url(base, file.id, "parsed", stamp) if file.has_parse_result else None,
        expires_at=_aware(expires_at),
    )


async def open_download(
    files: SessionFiles, file_id: str, what: str, *, expires: str | None, signature: str | None
) -> tuple[str, bytes, str]:
    """(file name, content, media type) behind a signed link."""
    if what not in ("origin", "parsed"):
        raise NotFound(f"There is no '{what}' download")
    files.signer.verify_download(file_id, what, expires, signature, now=files.clock().timestamp())
    async with files.db.session() as session:
        row = await session.get(SessionFile, file_id)
    if row is None:
        raise NotFound(f"File '{file_id}' does not exist")
    if what == "parsed":
        text = await parse_result(files, row.workspace_id, file_id)
        return f"{row.file_name}.md", text.encode(), "text/markdown; charset=utf-8"
    if row.object_key is None:
        raise NotFound(f"The bytes of file '{file_id}' are gone (its processing failed or it expired)")
    content = await asyncio.to_thread(files.store.get, row.object_key)
    media = mimetypes.types_map.get(f".{row.file_type}", "application/octet-stream")
    return row.file_name, content, media


# ---------------------------------------------------------------- categories


async def get_category(session: AsyncSession, workspace_id: str, category_id: str) -> Category:
    if category_id == CATEGORY_ID:
        return DEFAULT_CATEGORY
    row = await session.get(DataCenterCategory, category_id) if isinstance(category_id, str) else None
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"Category '{category_id}' does not exist in workspace '{workspace_id}'")
    return _category(row)


def _category(row: DataCenterCategory) -> Category:
    return Category(row.id, row.name, row.category_type, row.parent_id, False)


async def add_category(
    session: AsyncSession, workspace_id: str, *, name: str, category_type: str | None, parent_id: str | None = None
) -> Category:
    if not isinstance(name, str) or not CATEGORY_NAME.match(name):
        raise InvalidParameter(
            "CategoryName is 1-20 letters, digits, Chinese characters, or ':', '_', '.', '-'"
        )
    if (category_type or DATACENTER_TYPE) != DATACENTER_TYPE:
        raise InvalidParameter(f"CategoryType must be '{DATACENTER_TYPE}', not '{category_type}'")
    await ensure_workspace(session, workspace_id)
    if parent_id:
        await get_category(session, workspace_id, parent_id)
    row = DataCenterCategory(
        id=f"{CATEGORY_ID_PREFIX}{uuid.uuid4().hex}", workspace_id=workspace_id, name=name,
        category_type=DATACENTER_TYPE, parent_id=None if parent_id == CATEGORY_ID else parent_id or None,
    )
    session.add(row)
    await session.flush()
    return _category(row)


async def list_categories(
    session: AsyncSession,
    workspace_id: str,
    *,
    name: str | None = None,
    parent_id: str | None = None,
    max_results: int = 20,
    next_token: str | None = None,
) -> tuple[list[Category], str | None, int]:
    """``default`` first, then the workspace's categories in the order they were made."""
    max_results = 20 if max_results < 1 else min(max_results, 200)
    offset = _offset(next_token)
    if parent_id and parent_id != CATEGORY_ID:
        await get_category(session, workspace_id, parent_id)
    rows = await session.scalars(
        select(DataCenterCategory)
        .where(
            DataCenterCategory.workspace_id == workspace_id,
            DataCenterCategory.parent_id == (parent_id if parent_id and parent_id != CATEGORY_ID else None),
        )
        .order_by(DataCenterCategory.created_at, DataCenterCategory.id)
    )
    everything = ([DEFAULT_CATEGORY] if not parent_id else []) + [_category(r) for r in rows]
    if name:
        everything = [c for c in everything if c.name == name]
    page = everything[offset : offset + max_results]
    following = offset + len(page)
    return page, (str(following) if following < len(everything) else None), len(everything)


async def delete_category(session: AsyncSession, workspace_id: str, category_id: str) -> None:
    """Only an empty category goes (``default`` never): documents are deleted one by one."""
    if category_id == CATEGORY_ID:
        raise InvalidParameter("The default category cannot be deleted")
    category = await get_category(session, workspace_id, category_id)
    used = await session.scalar(
        select(func.count()).select_from(SessionFile).where(
            SessionFile.workspace_id == workspace_id, SessionFile.category_id == category.id
        )
    )
    children = await session.scalar(
        select(func.count()).select_from(DataCenterCategory).where(DataCenterCategory.parent_id == category.id)
    )
    if used or children:
        raise Conflict(
            f"Category '{category_id}' still holds {used or 0} file(s) and {children or 0} categories: "
            "delete them first"
        )
    await session.execute(delete(DataCenterCategory).where(DataCenterCategory.id == category.id))


def _offset(next_token: str | None) -> int:
    if not next_token:
        return 0
    if not isinstance(next_token, str) or not next_token.isdigit():
        raise InvalidParameter("NextToken is not one this server returned")
    return int(next_token)


async def usable_files(
    files: SessionFiles, workspace_id: str, file_ids: object, *, max_files: int
) -> list[SessionFile]:
    """The files a call names in ``rag_options.session_file_ids``, each checked (the rows: the
    context source reads their bytes and index entries)."""
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
        check_owner(None if row is None else row.workspace_id, file_id, workspace_id,
                    missing=NotFound, label="Session file")
        assert row is not None
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


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)

