"""The JSON shapes of the management API (``/manage/v1``), which the CLI's ``--json`` prints too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from openbailian.services.files import FileInfo, UploadLease
from openbailian.services.knowledge import DocumentInfo, IngestProgress, KnowledgeBaseInfo
from openbailian.services.memory import MemoryInfo, MemoryNode

__all__ = ["base_view", "document_view", "file_view", "item_view", "lease_view", "memory_view", "progress_view"]


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def base_view(base: KnowledgeBaseInfo) -> dict[str, Any]:
    return {
        "index_id": base.id, "name": base.name, "kind": base.kind, "description": base.description,
        "workspace": base.workspace_id, "created_at": base.created_at.isoformat(),
    }


def document_view(document: DocumentInfo) -> dict[str, Any]:
    return {
        "file_id": document.id, "index_id": document.base_id, "name": document.name,
        "file_type": document.file_type, "size_bytes": document.size_bytes, "status": document.status,
        "reason": document.reason or None, "tags": list(document.tags), "metadata": dict(document.metadata),
        "pages": document.pages, "chunks": document.chunks, "history": list(document.history),
        "progress": progress_view(document.progress),
        "created_at": document.created_at.isoformat(), "updated_at": document.updated_at.isoformat(),
    }


def progress_view(progress: IngestProgress | None) -> dict[str, Any] | None:
    """An ingesting document's embedding progress and estimated seconds left (null otherwise)."""
    if progress is None:
        return None
    return {"chunks_embedded": progress.chunks_embedded, "chunks_total": progress.chunks_total,
            "eta_seconds": progress.eta_seconds}


def lease_view(lease: UploadLease) -> dict[str, Any]:
    """The ``Data`` of ApplyFileUploadLease."""
    return {
        "FileUploadLeaseId": lease.lease_id,
        "Type": "HTTP",
        "Param": {"Method": lease.method, "Url": lease.url, "Headers": dict(lease.headers)},
        "ExpireTime": _iso(lease.expires_at),
    }


def file_view(file: FileInfo) -> dict[str, Any]:
    """A session file in PascalCase, as the session-file routes show it."""
    return {
        "FileId": file.id,
        "CategoryId": file.category_id,
        "CategoryType": file.category_type,
        "FileName": file.file_name,
        "FileType": file.file_type,
        "SizeInBytes": file.size_in_bytes,
        "Md5": file.md5,
        "Status": file.status,
        "FailureReason": file.failure_reason or None,
        "Parser": file.parser,
        "PageCount": file.page_count,
        "ChunkCount": file.chunk_count,
        "CreateTime": _iso(file.created_at),
        "UpdateTime": _iso(file.updated_at),
        "ExpireTime": _iso(file.expires_at) if file.expires_at else None,
        "Tags": list(file.tags),
    }


def memory_view(memory: MemoryInfo) -> dict[str, Any]:
    return {
        "memory_id": memory.id,
        "memoryId": memory.id,
        "workspace": memory.workspace_id,
        "description": memory.description,
        "created_at": memory.created_at.isoformat() if memory.created_at else None,
        "items": memory.items,
    }


def item_view(item: MemoryNode) -> dict[str, Any]:
    return {
        "id": item.id,
        "memory_node_id": item.id,
        "memoryNodeId": item.id,
        "memory_id": item.memory_id,
        "content": item.content,
        "subject": item.subject,
        "source": item.source,
        "created_at": item.created_at.isoformat() if item.created_at else None,
        "updated_at": item.updated_at.isoformat() if item.updated_at else None,
    }
