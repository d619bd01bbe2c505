"""Knowledge-base use cases shared by the management API, the CLI and app calls.

Every function checks the workspace: a base or document of another workspace is
reported exactly like one that does not exist.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import (
    Conflict,
    InvalidParameter,
    KnowledgeBaseNotFound,
    KnowledgeFileNotFound,
    RequestTooLarge,
)
from openbailian.knowledge.ingest import Status, record_transition
from openbailian.knowledge.parse import supported_types
from openbailian.knowledge.retrieve import Hit, Retriever
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.knowledge_models import (
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
)

__all__ = [
    "BASE_KINDS",
    "SYSTEM_KINDS",
    "create_base",
    "get_base",
    "list_bases",
    "delete_base",
    "ensure_system_base",
    "check_upload",
    "add_document",
    "get_document",
    "list_documents",
    "delete_document",
    "reindex_document",
    "SearchRequest",
    "parse_search_options",
    "search",
    "base_view",
    "document_view",
]

BASE_KINDS = frozenset({"unstructured", "structured"})
SYSTEM_KINDS = frozenset({"session"})  # managed by features (session files), hidden from lists
MAX_TAGS = 32
MAX_META = 32
FILES_DIR = Path("knowledge") / "files"


def _new_id() -> str:
    return uuid.uuid4().hex


# ---------------------------------------------------------------- bases


async def create_base(
    session: AsyncSession, *, workspace_id: str, name: str, kind: str = "unstructured", description: str = ""
) -> KnowledgeBase:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidParameter("A knowledge base name is 1-200 characters")
    if kind not in BASE_KINDS | SYSTEM_KINDS:
        raise InvalidParameter(f"A knowledge base is 'unstructured' or 'structured', not '{kind}'")
    await ensure_workspace(session, workspace_id)
    base = KnowledgeBase(id=_new_id(), workspace_id=workspace_id, name=name, kind=kind, description=description)
    session.add(base)
    await session.flush()
    return base


async def get_base(session: AsyncSession, base_id: str, workspace_id: str) -> KnowledgeBase:
    base = await session.get(KnowledgeBase, base_id) if isinstance(base_id, str) else None
    if base is None or base.workspace_id != workspace_id:
        raise KnowledgeBaseNotFound(f"Knowledge base '{base_id}' does not exist in workspace '{workspace_id}'")
    return base


async def list_bases(session: AsyncSession, workspace_id: str) -> list[KnowledgeBase]:
    query = (
        select(KnowledgeBase)
        .where(KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.kind.in_(BASE_KINDS))
        .order_by(KnowledgeBase.created_at)
    )
    return list(await session.scalars(query))


async def delete_base(session: AsyncSession, base_id: str, workspace_id: str, home: Path) -> None:
    base = await get_base(session, base_id, workspace_id)
    documents = list(await session.scalars(select(KnowledgeDocument).where(KnowledgeDocument.base_id == base.id)))
    await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.base_id == base.id))
    await session.execute(delete(KnowledgeDocument).where(KnowledgeDocument.base_id == base.id))
    await session.delete(base)
    await session.flush()
    for document in documents:
        _remove_file(home, document)


async def ensure_system_base(session: AsyncSession, workspace_id: str, kind: str = "session") -> KnowledgeBase:
    """The workspace's hidden base of this kind (session files keep their documents there)."""
    if kind not in SYSTEM_KINDS:
        raise InvalidParameter(f"'{kind}' is not a system knowledge base kind")
    found = await session.scalar(
        select(KnowledgeBase).where(KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.kind == kind)
    )
    if found is not None:
        return found
    return await create_base(session, workspace_id=workspace_id, name=f"{kind} files", kind=kind)


# ---------------------------------------------------------------- documents


def check_upload(base: KnowledgeBase, name: str, size: int, max_bytes: int) -> str:
    """The file's type (extension), after refusing what cannot be ingested at all."""
    name = Path(name or "").name
    if not name:
        raise InvalidParameter("The file needs a name (its extension tells its type)")
    ext = Path(name).suffix.lower()
    allowed = supported_types("structured" if base.kind == "structured" else "unstructured")
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


async def add_document(
    session: AsyncSession,
    base: KnowledgeBase,
    *,
    name: str,
    data: bytes | Path,
    home: Path,
    max_bytes: int,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    source: str = "upload",
) -> KnowledgeDocument:
    """Store the file and queue it (status INIT); ``data`` given as a Path is moved, not copied."""
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    ext = check_upload(base, name, size, max_bytes)
    tags_, meta = _clean_tags(tags), _clean_metadata(metadata)
    document_id = _new_id()
    relative = FILES_DIR / base.id / f"{document_id}{ext}"
    target = home / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, Path):
        shutil.move(data, target)
    else:
        target.write_bytes(data)
    try:
        document = KnowledgeDocument(
            id=document_id, base_id=base.id, workspace_id=base.workspace_id, name=Path(name).name,
            file_type=ext, size_bytes=size, sha256=_sha256(target), storage_path=relative.as_posix(),
            source=source, tags=tags_, meta=meta, history=[], attempts=0, pages=0, chunk_count=0,
        )
        record_transition(document, Status.INIT)
        session.add(document)
        await session.flush()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return document


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_file(home: Path, document: KnowledgeDocument) -> None:
    (home / document.storage_path).unlink(missing_ok=True)


async def get_document(session: AsyncSession, document_id: str, workspace_id: str) -> KnowledgeDocument:
    document = await session.get(KnowledgeDocument, document_id) if isinstance(document_id, str) else None
    if document is None or document.workspace_id != workspace_id:
        raise KnowledgeFileNotFound(f"File '{document_id}' does not exist in workspace '{workspace_id}'")
    return document


async def list_documents(session: AsyncSession, base_id: str, workspace_id: str) -> list[KnowledgeDocument]:
    base = await get_base(session, base_id, workspace_id)
    query = select(KnowledgeDocument).where(KnowledgeDocument.base_id == base.id).order_by(KnowledgeDocument.created_at)
    return list(await session.scalars(query))


async def _bump(session: AsyncSession, base_id: str) -> None:
    await session.execute(
        update(KnowledgeBase).where(KnowledgeBase.id == base_id).values(version=KnowledgeBase.version + 1)
    )


async def delete_document(session: AsyncSession, document_id: str, workspace_id: str, home: Path) -> None:
    """Delete the document, its chunks and its bytes; indexes drop its vectors before their next search."""
    document = await get_document(session, document_id, workspace_id)
    await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == document.id))
    await session.delete(document)
    await _bump(session, document.base_id)
    await session.flush()
    _remove_file(home, document)


async def reindex_document(session: AsyncSession, document_id: str, workspace_id: str) -> KnowledgeDocument:
    """Parse and index the document again from its stored bytes (also a retry after failure)."""
    document = await get_document(session, document_id, workspace_id)
    if document.status not in {Status.FILE_IS_READY, Status.PARSE_FAILED, Status.INDEX_BUILDING_FAILED}:
        raise Conflict(f"File '{document_id}' is being ingested ({document.status}); try again when it is done")
    await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == document.id))
    record_transition(document, Status.INIT)
    document.attempts = 0
    document.chunk_count = 0
    document.lease_until = None
    await _bump(session, document.base_id)
    await session.flush()
    return document


# ---------------------------------------------------------------- search


@dataclass(frozen=True, slots=True)
class SearchRequest:
    base_ids: list[str]
    document_ids: list[str] | None = None
    tags: list[str] | None = None
    metadata: dict[str, str] | None = None
    structured: dict[str, str] | None = None


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
    session: AsyncSession,
    workspace_id: str,
    default_base_ids: Sequence[str],
    options: Mapping[str, Any] | None,
    retriever: Retriever,
) -> SearchRequest | None:
    """Validate ``rag_options`` against the workspace; None when there is nothing to search.

    ``pipeline_ids`` replace the app's bases; ``file_ids`` must be documents of a searched
    base (and then only those documents are searched) or the call fails; a metadata or
    structured filter on a field no searched document has is an error.
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
    documents = [await get_document(session, file_id, workspace_id) for file_id in file_ids or []]
    outside = [d.id for d in documents if d.base_id not in base_ids]
    if outside:
        # The seed: a file id only counts together with its base's id. Ignoring it
        # silently would search more (or less) than the caller asked for.
        raise InvalidParameter(
            f"rag_options.file_ids: file(s) {', '.join(outside)} belong to no knowledge base being "
            "searched; add their knowledge base ids to rag_options.pipeline_ids"
        )
    if not base_ids:
        return None
    bases = [await get_base(session, base_id, workspace_id) for base_id in base_ids]
    scoped = [d.id for d in documents]
    if metadata:
        known: set[str] = set()
        for meta in await session.scalars(
            select(KnowledgeDocument.meta).where(KnowledgeDocument.base_id.in_(base_ids))
        ):
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
            headers |= await retriever.headers(base)
        unknown = sorted(set(structured) - headers)
        if unknown:
            raise InvalidParameter(f"structured_filter names unknown column(s): {', '.join(unknown)}")
    return SearchRequest(
        base_ids=[b.id for b in bases],
        document_ids=scoped or None,
        tags=tags,
        metadata=metadata,
        structured=structured,
    )


async def search(retriever: Retriever, request: SearchRequest, query: str, *, top_k: int = 5) -> list[Hit]:
    return await retriever.search(
        request.base_ids, query, top_k=top_k, document_ids=request.document_ids, tags=request.tags,
        metadata=request.metadata, structured=request.structured,
    )


# ---------------------------------------------------------------- views


def base_view(base: KnowledgeBase) -> dict[str, Any]:
    return {
        "index_id": base.id, "name": base.name, "kind": base.kind, "description": base.description,
        "workspace": base.workspace_id, "created_at": base.created_at.isoformat(),
    }


def document_view(document: KnowledgeDocument) -> dict[str, Any]:
    return {
        "file_id": document.id, "index_id": document.base_id, "name": document.name,
        "file_type": document.file_type, "size_bytes": document.size_bytes, "status": document.status,
        "reason": document.reason or None, "tags": list(document.tags or []), "metadata": dict(document.meta or {}),
        "pages": document.pages, "chunks": document.chunk_count, "history": list(document.history or []),
        "created_at": document.created_at.isoformat(), "updated_at": document.updated_at.isoformat(),
    }

