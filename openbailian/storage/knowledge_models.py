"""Knowledge-base tables: bases, documents (with their ingestion status) and chunks.

Chunks keep their text, pages, record and embedding (float32 bytes), so every
in-memory index can be rebuilt from here; a PostgreSQL deployment can add a
pgvector column beside ``embedding`` without the engine noticing (the engine
talks to a ``VectorIndex``, not to this table).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openbailian.storage.models import Base, utcnow

__all__ = ["KnowledgeBase", "KnowledgeDocument", "KnowledgeChunk", "KnowledgeJob"]


class KnowledgeBase(Base):
    __tablename__ = "knowledge_bases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # "unstructured", "structured", or a system kind such as "session" (hidden from lists).
    kind: Mapped[str] = mapped_column(String(16))
    # Which embedder made the vectors (a base is searched with the same one).
    embedder: Mapped[str] = mapped_column(String(200), default="")
    # Bumped on every change of its chunks: in-memory indexes compare it to stay in step.
    version: Mapped[int] = mapped_column(Integer, default=0)
    # How documents are cut (characters, as the OpenAPI's CreateIndex says); None: the
    # token-based default chunker.
    chunk_size: Mapped[int | None] = mapped_column(Integer, default=None)
    overlap_size: Mapped[int | None] = mapped_column(Integer, default=None)
    separator: Mapped[str | None] = mapped_column(Text, default=None)
    # What CreateIndex was given beyond that (source type and ids, sink, model names…),
    # kept as sent so ListIndices shows it back.
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class KnowledgeDocument(Base):
    __tablename__ = "knowledge_documents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    base_id: Mapped[str] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(500))
    file_type: Mapped[str] = mapped_column(String(16))  # ".pdf", ".docx", …
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(Text)  # the original bytes, relative to home
    source: Mapped[str] = mapped_column(String(16), default="upload")  # "upload", "session", "datacenter"
    # The data-center document this one was imported from (its id is what callers name).
    source_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32), index=True, default="INIT")
    reason: Mapped[str] = mapped_column(Text, default="")
    # [{"status": ..., "at": iso8601}, …]: every transition, for DescribeFile-style views.
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A worker owns the document until this time (renewed while it works); a crashed
    # worker's lease runs out and another one (or the restarted server) resumes.
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(32), default=None)  # the claimant's token
    pages: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    # While INDEX_BUILDING: chunks embedded so far of the document's total, and since when
    # (the progress and time left every face shows).
    chunks_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    chunks_embedded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    embedding_started_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class KnowledgeChunk(Base):
    __tablename__ = "knowledge_chunks"

    # An integer id: it is the key in the vector and keyword indexes.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        ForeignKey("knowledge_documents.id", ondelete="CASCADE"), index=True
    )
    base_id: Mapped[str] = mapped_column(String(32), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")  # heading path, " > " joined
    text: Mapped[str] = mapped_column(Text)
    pages: Mapped[list[int]] = mapped_column(JSON, default=list)
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # structured row
    terms: Mapped[str] = mapped_column(Text, default="")  # BM25 terms, space separated
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # float32


class KnowledgeJob(Base):
    """One SubmitIndexJob / SubmitIndexAddDocumentsJob: the documents it queued."""

    __tablename__ = "knowledge_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    base_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    document_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
