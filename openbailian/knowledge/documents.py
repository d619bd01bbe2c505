"""Session files' documents in the knowledge pipeline: knowledge's side of ``files.ports.DocumentIndex``.

Each workspace has one hidden system knowledge base of kind ``session``; a session file is
one document in it (its ``ref`` is the document id), parsed with the session parsers (the
ingestor's parsers for that kind). Parsing, chunking, embedding, indexing and hybrid
retrieval are the pipeline's. ``index`` runs the document through the ingestor here, or —
when another worker (of this process or another one sharing the database) holds it —
waits for it: woken by the ingestor's transitions in this process, and reading the
document's row every ``poll_seconds`` for work done elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy import select

from openbailian.files.ports import Indexed, Passage, StatusCallback
from openbailian.files.safety import SafetyLimits
from openbailian.knowledge.chunk import count_tokens
from openbailian.knowledge.embed import run_for_query
from openbailian.knowledge.ingest import TERMINAL, Status
from openbailian.knowledge.parse import STANDARD
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.services import knowledge as kb
from openbailian.storage.knowledge_models import KnowledgeChunk, KnowledgeDocument

__all__ = ["SessionDocuments", "SESSION_BASE_KIND"]

SESSION_BASE_KIND = "session"


class SessionDocuments:
    def __init__(self, knowledge: KnowledgeSystem, *, max_bytes: int, poll_seconds: float | None = None) -> None:
        self.knowledge = knowledge
        self.db = knowledge.db
        self.max_bytes = max_bytes  # checked per kind by session files before a file gets here
        self.poll_seconds = poll_seconds or knowledge.settings.worker_poll_seconds
        self.types = knowledge.ingestor.parsers.get(SESSION_BASE_KIND, STANDARD).types

    async def add(self, workspace_id: str, file_id: str, file_name: str, source: Path) -> str:
        async with self.db.transaction() as session:
            base = await kb.ensure_system_base(session, workspace_id, kind=SESSION_BASE_KIND)
        staged = await kb.stage_document(  # outside any transaction: the checks hold no lock
            base, name=file_name, data=source, store=self.knowledge.store, max_bytes=self.max_bytes,
            limits=SafetyLimits.of(self.knowledge.settings), types=self.types,
        )
        try:
            async with self.db.transaction() as session:
                document = await kb.add_document(
                    session, base, staged, metadata={"session_file_id": file_id}, source="session"
                )
        except BaseException:
            await kb.discard_staged(self.knowledge.store, [staged])
            raise
        return document.id

    async def index(self, ref: str, on_status: StatusCallback | None = None) -> Indexed:
        changed = asyncio.Event()

        def listener(document_id: str, _status: str) -> None:
            if document_id == ref:
                changed.set()

        self.knowledge.ingestor.listeners.append(listener)
        here = asyncio.create_task(self.knowledge.ingestor.ingest(ref))  # a no-op when another holds it
        try:
            return await self._follow(ref, here, changed, on_status)
        finally:
            self.knowledge.ingestor.listeners.remove(listener)
            here.cancel()
            await asyncio.gather(here, return_exceptions=True)

    async def _follow(
        self, ref: str, here: asyncio.Task[str | None], changed: asyncio.Event, on_status: StatusCallback | None
    ) -> Indexed:
        shown = ""
        while True:
            changed.clear()
            if here.done() and (error := here.exception()) is not None:
                return Indexed(Status.INDEX_BUILDING_FAILED, f"Indexing failed: {error}")
            state = await self._state(ref)
            if state is None:
                return Indexed(Status.INDEX_BUILDING_FAILED, "The file's index entry disappeared")
            if state.status in TERMINAL:
                return state
            if state.status != shown and on_status is not None:
                await on_status(state.status)
            shown = state.status
            await _first_of(changed, here, self.poll_seconds)

    async def _state(self, ref: str) -> Indexed | None:
        async with self.db.session() as session:
            document = await session.get(KnowledgeDocument, ref)
        if document is None:
            return None
        return Indexed(document.status, document.reason, document.pages, document.chunk_count)

    async def texts(self, ref: str) -> list[str]:
        return [p.text for p in await self._all_passages([ref])]

    async def delete(self, ref: str) -> None:
        async with self.db.transaction() as session:
            document = await session.get(KnowledgeDocument, ref)
            if document is None:
                return
            await kb.delete_document(session, ref, document.workspace_id, self.knowledge.store)

    async def passages(self, refs: list[str], query: str, whole_tokens: int, top_k: int) -> list[Passage]:
        everything = await self._all_passages(refs)
        total = await run_for_query(_tokens, everything)  # the query path's threads: the call's own work
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


def _tokens(passages: list[Passage]) -> int:
    return sum(count_tokens(p.text) for p in passages)


async def _first_of(changed: asyncio.Event, here: asyncio.Task[str | None], timeout: float) -> None:
    """Until a transition of the document here, the end of this process's attempt, or ``timeout``."""
    woken = asyncio.create_task(changed.wait())
    waiting: list[asyncio.Task[Any]] = [woken] if here.done() else [woken, here]
    try:
        await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await woken
