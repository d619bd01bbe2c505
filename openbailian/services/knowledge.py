"""Knowledge-base use cases shared by the management API, the CLI and app calls.

Every function checks the workspace: a base or document of another workspace is
reported exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import (
    Conflict,
    InvalidParameter,
    KnowledgeBaseNotFound,
    KnowledgeFileNotFound,
    RequestTooLarge,
)
from openbailian.files.safety import SafetyLimits, UnsafeFile, check_document
from openbailian.files.store import ObjectStore
from openbailian.knowledge.ingest import Status, record_transition
from openbailian.knowledge.parse import supported_types
from openbailian.knowledge.retrieve import Hit, KnownBase, QueryAhead, Retriever, has_ready_document
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.db import Database
from openbailian.storage.files_models import SessionFile
from openbailian.storage.knowledge_models import (
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
    KnowledgeJob,
)

__all__ = [
    "KnowledgeBaseInfo",
    "DocumentInfo",
    "IngestProgress",
    "ChunkSettings",
    "BASE_KINDS",
    "SYSTEM_KINDS",
    "check_chunking",
    "create_base",
    "get_base",
    "update_base",
    "list_bases",
    "delete_base",
    "ensure_system_base",
    "check_upload",
    "StagedDocument",
    "stage_document",
    "discard_staged",
    "add_document",
    "upload_documents",
    "get_document",
    "list_documents",
    "documents_by_ids",
    "resolve_documents",
    "delete_document",
    "reindex_document",
    "SearchRequest",
    "parse_search_options",
    "search",
]

BASE_KINDS = frozenset({"unstructured", "structured"})
SYSTEM_KINDS = frozenset({"session"})  # managed by features (session files), hidden from lists
MAX_TAGS = 32
MAX_META = 32
FILES_DIR = "knowledge/files"  # object keys of the documents' bytes


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class ChunkSettings:
    """How a base cuts its documents, in characters; ``None`` everywhere: the default chunker."""

    size: int | None = None
    overlap: int | None = None
    separator: str | None = None


@dataclass(frozen=True, slots=True)
class KnowledgeBaseInfo:
    id: str
    workspace_id: str
    name: str
    kind: str
    description: str
    version: int
    chunking: ChunkSettings
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: KnowledgeBase | Row[Any]) -> KnowledgeBaseInfo:
        return cls(
            id=row.id, workspace_id=row.workspace_id, name=row.name, kind=row.kind,
            description=row.description or "", version=row.version or 0,
            chunking=ChunkSettings(row.chunk_size, row.overlap_size, row.separator),
            options=dict(row.options or {}), created_at=row.created_at, updated_at=row.updated_at,
        )


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """How far a document's embedding is: chunks embedded of its total, and the seconds left
    at its pace so far (``None`` until its first batch is done)."""

    chunks_embedded: int
    chunks_total: int
    eta_seconds: float | None

    @classmethod
    def of(cls, row: KnowledgeDocument, now: datetime) -> IngestProgress | None:
        """The progress of a document being embedded (INDEX_BUILDING); None otherwise."""
        if row.status != Status.INDEX_BUILDING or not row.chunks_total:
            return None
        done, total = min(row.chunks_embedded or 0, row.chunks_total), row.chunks_total
        eta = None
        if done and row.embedding_started_at is not None:
            started = row.embedding_started_at
            elapsed = max((now - (started if started.tzinfo else started.replace(tzinfo=UTC))).total_seconds(), 0.0)
            # Rounded up to a tenth, and never 0 while chunks are left: a fast first batch would
            # otherwise promise "no time left" for the rest.
            eta = max(math.ceil(elapsed * (total - done) / done * 10) / 10, 0.1) if done < total else 0.0
        return cls(done, total, eta)


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: str
    base_id: str
    workspace_id: str
    name: str
    file_type: str
    size_bytes: int
    status: str
    reason: str
    source: str
    # The data-center document it was imported from: the id callers know it by.
    source_id: str | None
    pages: int
    chunks: int
    created_at: datetime
    updated_at: datetime
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    progress: IngestProgress | None = None  # while its chunks are being embedded

    @property
    def public_id(self) -> str:
        return self.source_id or self.id

    @classmethod
    def of(cls, row: KnowledgeDocument) -> DocumentInfo:
        return cls(
            id=row.id, base_id=row.base_id, workspace_id=row.workspace_id, name=row.name,
            file_type=row.file_type, size_bytes=row.size_bytes, status=row.status, reason=row.reason or "",
            source=row.source, source_id=row.source_id, pages=row.pages or 0, chunks=row.chunk_count or 0,
            created_at=row.created_at, updated_at=row.updated_at, tags=list(row.tags or []),
            metadata=dict(row.meta or {}), history=list(row.history or []),
            progress=IngestProgress.of(row, datetime.now(UTC)),
        )


# ---------------------------------------------------------------- bases


MAX_CHUNK_SIZE = 6000
MAX_OVERLAP = 1024


def check_chunking(chunking: ChunkSettings) -> ChunkSettings:
    """Chunk size 1-6000 characters, overlap 0-1024 and smaller than the size; a separator alone
    keeps the default size (500) and overlap (100), as Bailian's CreateIndex does."""
    if chunking.size is None and chunking.overlap is None and not chunking.separator:
        return ChunkSettings()
    size = 500 if chunking.size is None else chunking.size
    overlap = min(100, size - 1) if chunking.overlap is None else chunking.overlap
    if not 1 <= size <= MAX_CHUNK_SIZE:
        raise InvalidParameter(f"ChunkSize must be between 1 and {MAX_CHUNK_SIZE} characters, not {size}")
    if not 0 <= overlap <= MAX_OVERLAP:
        raise InvalidParameter(f"OverlapSize must be between 0 and {MAX_OVERLAP} characters, not {overlap}")
    if overlap >= size:
        raise InvalidParameter(f"OverlapSize ({overlap}) must be smaller than ChunkSize ({size})")
    separator = chunking.separator or None
    if separator is not None and len(separator) > 32:
        raise InvalidParameter("Separator is at most 32 characters")
    return ChunkSettings(size, overlap, separator)


async def create_base(
    session: AsyncSession,
    *,
    workspace_id: str,
    name: str,
    kind: str = "unstructured",
    description: str = "",
    chunking: ChunkSettings | None = None,
    options: Mapping[str, Any] | None = None,
) -> KnowledgeBaseInfo:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidParameter("A knowledge base name is 1-200 characters")
    if kind not in BASE_KINDS | SYSTEM_KINDS:
        raise InvalidParameter(f"A knowledge base is 'unstructured' or 'structured', not '{kind}'")
    if len(description or "") > 2000:
        raise InvalidParameter("A knowledge base description is at most 2000 characters")
    rule = check_chunking(chunking or ChunkSettings())
    await ensure_workspace(session, workspace_id)
    base = KnowledgeBase(
        id=_new_id(), workspace_id=workspace_id, name=name, kind=kind, description=description or "",
        chunk_size=rule.size, overlap_size=rule.overlap, separator=rule.separator,
        options=dict(options) if options else None,
    )
    session.add(base)
    await session.flush()
    return KnowledgeBaseInfo.of(base)


async def _base_row(session: AsyncSession, base_id: str, workspace_id: str | None) -> KnowledgeBase:
    """``workspace_id=None`` (the administrator's CLI): the id alone finds the base."""
    base = await session.get(KnowledgeBase, base_id) if isinstance(base_id, str) else None
    if base is None or workspace_id is not None and base.workspace_id != workspace_id:
        where = f" in workspace '{workspace_id}'" if workspace_id is not None else ""
        raise KnowledgeBaseNotFound(f"Knowledge base '{base_id}' does not exist{where}")
    return base


async def get_base(session: AsyncSession, base_id: str, workspace_id: str | None) -> KnowledgeBaseInfo:
    return KnowledgeBaseInfo.of(await _base_row(session, base_id, workspace_id))


async def update_base(
    session: AsyncSession,
    base_id: str,
    workspace_id: str,
    *,
    chunking: ChunkSettings | None = None,
    options: Mapping[str, Any] | None = None,
) -> KnowledgeBaseInfo:
    """Change how documents added from now on are cut, and/or merge ``options`` into the base's."""
    base = await _base_row(session, base_id, workspace_id)
    if chunking is not None:
        rule = check_chunking(chunking)
        base.chunk_size, base.overlap_size, base.separator = rule.size, rule.overlap, rule.separator
    if options is not None:
        base.options = {**(base.options or {}), **options}
    await session.flush()
    return KnowledgeBaseInfo.of(base)


async def list_bases(session: AsyncSession, workspace_id: str) -> list[KnowledgeBaseInfo]:
    query = (
        select(KnowledgeBase)
        .where(KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.kind.in_(BASE_KINDS))
        .order_by(KnowledgeBase.created_at)
    )
    return [KnowledgeBaseInfo.of(row) for row in await session.scalars(query)]


async def delete_base(session: AsyncSession, base_id: str, workspace_id: str | None, store: ObjectStore) -> None:
    base = await _base_row(session, base_id, workspace_id)
    documents = list(await session.scalars(select(KnowledgeDocument).where(KnowledgeDocument.base_id == base.id)))
    await session.execute(delete(KnowledgeJob).where(KnowledgeJob.base_id == base.id))
    await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.base_id == base.id))
    await session.execute(delete(KnowledgeDocument).where(KnowledgeDocument.base_id == base.id))
    await session.delete(base)
    await session.flush()
    for document in documents:
        await asyncio.to_thread(_remove_file, store, document)


async def ensure_system_base(session: AsyncSession, workspace_id: str, kind: str = "session") -> KnowledgeBaseInfo:
    """The workspace's hidden base of this kind (session files keep their documents there)."""
    if kind not in SYSTEM_KINDS:
        raise InvalidParameter(f"'{kind}' is not a system knowledge base kind")
    found = await session.scalar(
        select(KnowledgeBase).where(KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.kind == kind)
    )
    if found is not None:
        return KnowledgeBaseInfo.of(found)
    return await create_base(session, workspace_id=workspace_id, name=f"{kind} files", kind=kind)


# ---------------------------------------------------------------- documents


def check_upload(
    base: KnowledgeBaseInfo, name: str, size: int, max_bytes: int, types: frozenset[str] | None = None
) -> str:
    """The file's type (extension), after refusing what cannot be ingested at all: a type not in
    ``types`` (by default what a base of this kind takes, as documented)."""
    name = Path(name or "").name
    if not name:
        raise InvalidParameter("The file needs a name (its extension tells its type)")
    ext = Path(name).suffix.lower()
    allowed = types if types is not None else supported_types(base.kind)
    if ext not in allowed:
        kind = "A structured" if base.kind == "structured" else "An unstructured"
        raise InvalidParameter(
            f"Unsupported file type '{ext or '(none)'}' for '{name}'. {kind} knowledge base takes: "
            + ", ".join(sorted(allowed))
        )
    if size > max_bytes:
        raise RequestTooLarge(f"'{name}' is {size} bytes; the limit is {max_bytes} bytes")
    if size == 0:
        raise InvalidParameter(f"'{name}' is empty")
    return ext


def _clean_tags(tags: Sequence[str] | None) -> list[str]:
    cleaned: list[str] = []
    for tag in tags or []:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 64:
            raise InvalidParameter("A tag is a string of 1-64 characters")
        if tag.strip() not in cleaned:
            cleaned.append(tag.strip())
    if len(cleaned) > MAX_TAGS:
        raise InvalidParameter(f"A document has at most {MAX_TAGS} tags")
    return cleaned


def _clean_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidParameter("metadata is an object of key/value pairs")
    if len(metadata) > MAX_META:
        raise InvalidParameter(f"A document has at most {MAX_META} metadata keys")
    cleaned = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key.strip() or len(key) > 64:
            raise InvalidParameter("A metadata key is a string of 1-64 characters")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidParameter(f"The metadata value of '{key}' must be a string or a number")
        cleaned[key.strip()] = str(value)
    return cleaned


@dataclass(frozen=True, slots=True)
class StagedDocument:
    """A document whose bytes passed the checks and are in the object store, not yet
    recorded: staging touches no database, so a slow safety check holds no connection or
    lock. Record it with :func:`add_document`, or :func:`discard_staged` it."""

    id: str
    base_id: str
    name: str
    file_type: str
    size: int
    sha256: str
    key: str


async def stage_document(
    base: KnowledgeBaseInfo,
    *,
    name: str,
    data: bytes | Path,
    store: ObjectStore,
    max_bytes: int,
    limits: SafetyLimits,
    move: bool = True,
    types: frozenset[str] | None = None,
) -> StagedDocument:
    """Check the file (type — one of ``types``, by default what the base takes —, size, the
    safety check) and put its bytes in the store; ``data`` given as a Path is moved (copied
    when ``move`` is False). Nothing is stored on refusal."""
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    ext = check_upload(base, name, size, max_bytes, types)
    await asyncio.to_thread(_check_safe, data, name, limits)  # before it is stored or any parser sees it
    document_id = _new_id()
    key = f"{FILES_DIR}/{base.id}/{document_id}{ext}"
    sha256 = await asyncio.to_thread(_sha256, data)
    await asyncio.to_thread(_put, store, key, data, move)
    return StagedDocument(document_id, base.id, Path(name).name, ext, size, sha256, key)


async def discard_staged(store: ObjectStore, staged: Sequence[StagedDocument]) -> None:
    """Remove the bytes of staged documents that will not be recorded."""
    for document in staged:
        await asyncio.to_thread(store.delete, document.key)


async def add_document(
    session: AsyncSession,
    base: KnowledgeBaseInfo,
    staged: StagedDocument,
    *,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    source: str = "upload",
    source_id: str | None = None,
) -> DocumentInfo:
    """Record a staged document and queue it (status INIT). On failure the caller discards
    what it staged (the transaction may still fail after this returns)."""
    if staged.base_id != base.id:
        raise InvalidParameter(f"'{staged.name}' was staged for another knowledge base")
    document = KnowledgeDocument(
        id=staged.id, base_id=base.id, workspace_id=base.workspace_id, name=staged.name,
        file_type=staged.file_type, size_bytes=staged.size, sha256=staged.sha256, storage_path=staged.key,
        source=source, source_id=source_id, tags=_clean_tags(tags), meta=_clean_metadata(metadata), history=[],
        attempts=0, pages=0, chunk_count=0,
    )
    record_transition(document, Status.INIT)
    session.add(document)
    await session.flush()
    return DocumentInfo.of(document)


async def upload_documents(
    db: Database,
    base: KnowledgeBaseInfo,
    files: Sequence[tuple[str, bytes | Path]],
    *,
    store: ObjectStore,
    max_bytes: int,
    limits: SafetyLimits,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    move: bool = True,
) -> list[DocumentInfo]:
    """Add these (name, data) files to the base, all or none: each is checked and stored
    first, outside any transaction, then all are recorded in one."""
    _clean_tags(tags)  # refuse bad ones before any work
    _clean_metadata(metadata)
    for name, data in files:
        check_upload(base, name, data.stat().st_size if isinstance(data, Path) else len(data), max_bytes)
    staged: list[StagedDocument] = []
    try:
        for name, data in files:
            staged.append(
                await stage_document(
                    base, name=name, data=data, store=store, max_bytes=max_bytes, limits=limits, move=move
                )
            )
        async with db.transaction() as session:
            await _base_row(session, base.id, base.workspace_id)  # still there
            return [await add_document(session, base, one, tags=tags, metadata=metadata) for one in staged]
    except BaseException:
        await discard_staged(store, staged)
        raise


def _put(store: ObjectStore, key: str, data: bytes | Path, move: bool) -> None:
    if isinstance(data, bytes):
        store.put(key, io.BytesIO(data))
    elif move:
        store.put_file(key, data)
    else:
        with data.open("rb") as source:
            store.put(key, source)


def _check_safe(data: bytes | Path, name: str, limits: SafetyLimits) -> None:
    """The session files' safety check (files/safety.py), on the knowledge path."""
    try:
        if isinstance(data, Path):
            check_document(data, name, limits)
            return
        with tempfile.NamedTemporaryFile(suffix=Path(name).suffix) as handle:
            handle.write(data)
            handle.flush()
            check_document(Path(handle.name), name, limits)
    except UnsafeFile as error:
        raise InvalidParameter(f"'{Path(name).name}' was refused by the safety check: {error.message}") from None


def _sha256(data: bytes | Path) -> str:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with data.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_file(store: ObjectStore, document: KnowledgeDocument) -> None:
    store.delete(document.storage_path)


async def _document_row(session: AsyncSession, document_id: str, workspace_id: str | None) -> KnowledgeDocument:
    document = await session.get(KnowledgeDocument, document_id) if isinstance(document_id, str) else None
    if document is None or workspace_id is not None and document.workspace_id != workspace_id:
        where = f" in workspace '{workspace_id}'" if workspace_id is not None else ""
        raise KnowledgeFileNotFound(f"File '{document_id}' does not exist{where}")
    return document


async def get_document(session: AsyncSession, document_id: str, workspace_id: str | None) -> DocumentInfo:
    return DocumentInfo.of(await _document_row(session, document_id, workspace_id))


async def list_documents(session: AsyncSession, base_id: str, workspace_id: str | None) -> list[DocumentInfo]:
    base = await _base_row(session, base_id, workspace_id)
    query = select(KnowledgeDocument).where(KnowledgeDocument.base_id == base.id).order_by(KnowledgeDocument.created_at)
    return [DocumentInfo.of(row) for row in await session.scalars(query)]


async def documents_by_ids(session: AsyncSession, document_ids: Sequence[str]) -> dict[str, DocumentInfo]:
    """The documents among these ids that still exist (a job's, whose documents may be gone)."""
    if not document_ids:
        return {}
    rows = await session.scalars(select(KnowledgeDocument).where(KnowledgeDocument.id.in_(list(document_ids))))
    return {row.id: DocumentInfo.of(row) for row in rows}


async def resolve_documents(
    session: AsyncSession, workspace_id: str, base_ids: Sequence[str], names: Sequence[str]
) -> tuple[list[DocumentInfo], list[str]]:
    """Documents of these bases named by their own id or by the data-center document id they
    came from; and the names that match none of them."""
    found: list[DocumentInfo] = []
    missing: list[str] = []
    for name in names:
        rows = list(
            await session.scalars(
                select(KnowledgeDocument).where(
                    KnowledgeDocument.workspace_id == workspace_id,
                    KnowledgeDocument.base_id.in_(list(base_ids)),
                    (KnowledgeDocument.id == name) | (KnowledgeDocument.source_id == name),
                )
            )
        )
        if rows:
            found.extend(DocumentInfo.of(row) for row in rows)
        else:
            missing.append(name)
    return found, missing


async def _bump(session: AsyncSession, base_id: str) -> None:
    await session.execute(
        update(KnowledgeBase).where(KnowledgeBase.id == base_id).values(version=KnowledgeBase.version + 1)
    )


async def delete_document(session: AsyncSession, document_id: str, workspace_id: str | None, store: ObjectStore) -> None:
    """Delete the document, its chunks and its bytes; indexes drop its vectors before their next search."""
    document = await _document_row(session, document_id, workspace_id)
    await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == document.id))
    await session.delete(document)
    await _bump(session, document.base_id)
    await session.flush()
    await asyncio.to_thread(_remove_file, store, document)


async def reindex_document(session: AsyncSession, document_id: str, workspace_id: str | None) -> DocumentInfo:
    """Parse and index the document again from its stored bytes (also a retry after failure)."""
    document = await _document_row(session, document_id, workspace_id)
    if document.status not in {Status.FILE_IS_READY, Status.PARSE_FAILED, Status.INDEX_BUILDING_FAILED}:
        raise Conflict(f"File '{document_id}' is being ingested ({document.status}); try again when it is done")
    await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == document.id))
    record_transition(document, Status.INIT)
    document.attempts = 0
    document.chunk_count = 0
    document.lease_until = None
    await _bump(session, document.base_id)
    await session.flush()
    return DocumentInfo.of(document)


# ---------------------------------------------------------------- search


@dataclass(frozen=True, slots=True)
class SearchRequest:
    base_ids: list[str]
    document_ids: list[str] | None = None
    tags: list[str] | None = None
    metadata: dict[str, str] | None = None
    structured: dict[str, str] | None = None
    bases: tuple[KnownBase, ...] = ()  # as read while checking the options: the search reads them no more


def _string_list(options: Mapping[str, Any], key: str) -> list[str] | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParameter(f"rag_options.{key} must be a list of non-empty strings")
    return list(dict.fromkeys(value))


def _string_map(options: Mapping[str, Any], key: str) -> dict[str, str] | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise InvalidParameter(f"rag_options.{key} must be an object of key/value pairs")
    cleaned = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise InvalidParameter(f"rag_options.{key}.{k} must be a string or a number")
        cleaned[k] = str(v)
    return cleaned or None


async def parse_search_options(
    db: Database,
    workspace_id: str,
    default_base_ids: Sequence[str],
    options: Mapping[str, Any] | None,
    retriever: Retriever,
) -> SearchRequest | None:
    """Validate ``rag_options`` against the workspace; None when there is nothing to search.

    ``pipeline_ids`` replace the app's bases; ``file_ids`` must be documents of a searched
    base (and then only those documents are searched) or the call fails; a metadata or
    structured filter on a field no searched document has is an error. Without file ids or a
    metadata filter (the usual call) this is one round trip.
    """
    options = options or {}
    if not isinstance(options, Mapping):
        raise InvalidParameter("rag_options must be an object")
    pipeline_ids = _string_list(options, "pipeline_ids")
    file_ids = _string_list(options, "file_ids")
    tags = _string_list(options, "tags")
    metadata = _string_map(options, "metadata_filter")
    structured = _string_map(options, "structured_filter")
    base_ids = pipeline_ids if pipeline_ids else list(dict.fromkeys(default_base_ids))
    rows = await db.read(lambda conn: _base_rows(conn, base_ids, workspace_id), quick=True)  # by key
    bases = [info for info, _ in rows]
    documents: list[DocumentInfo] = []
    outside: list[str] = []
    if file_ids:
        async with db.session() as session:
            documents, outside = await _named_documents(session, workspace_id, base_ids, file_ids)
    if outside:
        # The seed: a file id only counts together with its base's id. Ignoring it
        # silently would search more (or less) than the caller asked for.
        raise InvalidParameter(
            f"rag_options.file_ids: file(s) {', '.join(outside)} belong to no knowledge base being "
            "searched; add their knowledge base ids to rag_options.pipeline_ids"
        )
    if not base_ids:
        return None
    scoped = [d.id for d in documents]
    if metadata:
        known: set[str] = set()
        query = select(KnowledgeDocument.meta).where(KnowledgeDocument.base_id.in_(base_ids))
        for meta in await db.read(lambda conn: conn.scalars(query).all()):
            known.update(meta or {})
        unknown = sorted(set(metadata) - known)
        if unknown:
            raise InvalidParameter(f"metadata_filter names unknown field(s): {', '.join(unknown)}")
    if structured:
        structured_bases = [b for b in bases if b.kind == "structured"]
        if not structured_bases:
            raise InvalidParameter("structured_filter needs a structured knowledge base in pipeline_ids")
        headers: set[str] = set()
        for base in structured_bases:
            headers |= await retriever.headers(base.id, base.version)
        unknown = sorted(set(structured) - headers)
        if unknown:
            raise InvalidParameter(f"structured_filter names unknown column(s): {', '.join(unknown)}")
    return SearchRequest(
        base_ids=[b.id for b in bases],
        document_ids=scoped or None,
        tags=tags,
        metadata=metadata,
        structured=structured,
        bases=tuple(KnownBase(info.id, info.kind, info.version, ready) for info, ready in rows),
    )


# Built once (a search's hot path): the columns of KnowledgeBaseInfo and "has a ready document".
_BASES = select(
    KnowledgeBase.id, KnowledgeBase.workspace_id, KnowledgeBase.name, KnowledgeBase.kind,
    KnowledgeBase.description, KnowledgeBase.version, KnowledgeBase.chunk_size, KnowledgeBase.overlap_size,
    KnowledgeBase.separator, KnowledgeBase.options, KnowledgeBase.created_at, KnowledgeBase.updated_at,
    has_ready_document().label("ready"),
).where(KnowledgeBase.id.in_(bindparam("ids", expanding=True)))


def _base_rows(
    conn: Connection, base_ids: Sequence[str], workspace_id: str
) -> list[tuple[KnowledgeBaseInfo, bool]]:
    """The bases of these ids and whether each has a ready document, in one query; the first
    one missing (or of another workspace) is reported as :func:`get_base` reports it."""
    if not base_ids:
        return []
    rows = {row.id: row for row in conn.execute(_BASES, {"ids": list(base_ids)})}
    bases = []
    for base_id in base_ids:
        found = rows.get(base_id)
        if found is None or found.workspace_id != workspace_id:
            raise KnowledgeBaseNotFound(f"Knowledge base '{base_id}' does not exist in workspace '{workspace_id}'")
        bases.append((KnowledgeBaseInfo.of(found), bool(found.ready)))
    return bases


async def _named_documents(
    session: AsyncSession, workspace_id: str, base_ids: Sequence[str], file_ids: Sequence[str]
) -> tuple[list[DocumentInfo], list[str]]:
    """``file_ids`` are documents of the searched bases (by their id, or the data-center id they
    were imported from); the ids that exist but lie outside them. An id nowhere is not found."""
    inside, rest = await resolve_documents(session, workspace_id, base_ids, file_ids)
    outside = []
    for file_id in rest:
        known = await session.scalar(
            select(KnowledgeDocument.id).where(
                KnowledgeDocument.workspace_id == workspace_id,
                (KnowledgeDocument.id == file_id) | (KnowledgeDocument.source_id == file_id),
            ).limit(1)
        )
        if known is None and not await _is_datacenter_document(session, workspace_id, file_id):
            raise KnowledgeFileNotFound(f"File '{file_id}' does not exist in workspace '{workspace_id}'")
        outside.append(file_id)
    return inside, outside


async def _is_datacenter_document(session: AsyncSession, workspace_id: str, file_id: str) -> bool:
    row = await session.get(SessionFile, file_id)
    return row is not None and row.workspace_id == workspace_id


async def search(
    retriever: Retriever,
    request: SearchRequest,
    query: str,
    *,
    top_k: int = 5,
    rerank: bool = True,
    rerank_min_score: float | None = None,
    ahead: QueryAhead | None = None,
) -> list[Hit]:
    """``ahead``: the question's vector and terms, started before the options were checked
    (``retriever.ahead(query)``), so a new question's embedding overlaps that read."""
    return await retriever.search(
        request.base_ids, query, top_k=top_k, document_ids=request.document_ids, tags=request.tags,
        metadata=request.metadata, structured=request.structured, rerank=rerank,
        rerank_min_score=rerank_min_score, known=request.bases or None, ahead=ahead,
    )
