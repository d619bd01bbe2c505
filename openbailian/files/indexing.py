"""Session files in the knowledge pipeline (no second pipeline).

Each workspace has one hidden system knowledge base of kind ``session``; a
session file is one document in it (``index_ref`` = the document id). Parsing,
chunking, embedding, indexing and hybrid retrieval are the knowledge
pipeline's; this adapter only adds, follows, reads and removes documents.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from openbailian.config import Settings
from openbailian.files.formats import FORMATS
from openbailian.knowledge.chunk import count_tokens
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.storage.db import Database
from openbailian.storage.knowledge_models import KnowledgeChunk, KnowledgeDocument

__all__ = ["FileIndex", "IndexState", "Passage", "SESSION_BASE_KIND"]

SESSION_BASE_KIND = "session"
MAX_SESSION_FILE_BYTES = max(rule.max_bytes for rule in FORMATS)  # checked per kind at lease time


@dataclass(frozen=True, slots=True)
class IndexState:
    status: str  # the document's status, or "MISSING"
    reason: str = ""
    pages: int = 0
    chunks: int = 0


@dataclass(frozen=True, slots=True)
class Passage:
    ref: str
    title: str
    text: str
    pages: tuple[int, ...] = ()


class FileIndex:
    def __init__(self, db: Database, knowledge: KnowledgeSystem, settings: Settings) -> None:
        self.db = db
        self.knowledge = knowledge
        self.settings = settings

    async def add(self, workspace_id: str, file_id: str, file_name: str, source: Path) -> str:
        """Hand the file at ``source`` to the pipeline (it is moved); the document id."""
        from openbailian.services import knowledge as kb

        async with self.db.transaction() as session:
            base = await kb.ensure_system_base(session, workspace_id, kind=SESSION_BASE_KIND)
            document = await kb.add_document(
                session,
                base,
                name=file_name,
                data=source,
                store=self.knowledge.store,
                max_bytes=MAX_SESSION_FILE_BYTES,
                metadata={"session_file_id": file_id},
                source="session",
            )
            return document.id

    async def build(self, ref: str) -> None:
        """Run the pipeline for this document now (a no-op when a worker already holds it)."""
        await self.knowledge.ingestor.ingest(ref)

    async def state(self, ref: str) -> IndexState:
        async with self.db.session() as session:
            document = await session.get(KnowledgeDocument, ref)
        if document is None:
            return IndexState("MISSING")
        return IndexState(document.status, document.reason, document.pages, document.chunk_count)

    async def texts(self, ref: str) -> list[str]:
        return [p.text for p in await self._all_passages([ref])]

    async def delete(self, ref: str) -> None:
        """Remove the document, its stored bytes and its chunks (so its vectors leave the index)."""
        from openbailian.services import knowledge as kb

        async with self.db.transaction() as session:
            document = await session.get(KnowledgeDocument, ref)
            if document is None:
                return
            await kb.delete_document(session, ref, document.workspace_id, self.knowledge.store)

    async def passages(self, refs: list[str], query: str, whole_tokens: int, top_k: int) -> list[Passage]:
        """Every chunk, in order, when the files are small; else the best ``top_k`` for ``query``."""
        everything = await self._all_passages(refs)
        total = await asyncio.to_thread(lambda: sum(count_tokens(p.text) for p in everything))
        if total <= whole_tokens or not query.strip():
            return everything if total <= whole_tokens else everything[:top_k]
        async with self.db.session() as session:
            base_ids = list(
                await session.scalars(
                    select(KnowledgeDocument.base_id).where(KnowledgeDocument.id.in_(refs)).distinct()
                )
            )
        hits = await self.knowledge.retriever.search(base_ids, query, top_k=top_k, document_ids=refs)
        return [Passage(h.document_id, h.title, h.text, tuple(h.pages)) for h in hits]

    async def _all_passages(self, refs: list[str]) -> list[Passage]:
        async with self.db.session() as session:
            chunks = await session.scalars(
                select(KnowledgeChunk)
                .where(KnowledgeChunk.document_id.in_(refs))
                .order_by(KnowledgeChunk.document_id, KnowledgeChunk.seq)
            )
            by_ref: dict[str, list[Passage]] = {}
            for chunk in chunks:
                by_ref.setdefault(chunk.document_id, []).append(
                    Passage(chunk.document_id, chunk.title, chunk.text, tuple(chunk.pages or ()))
                )
        # In the order the call named the files.
        return [p for ref in refs for p in by_ref.get(ref, [])]
