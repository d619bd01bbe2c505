"""The ingestion pipeline and its background worker.

One document goes INIT → PARSING → PARSE_SUCCESS → INDEX_BUILDING →
INDEX_BUILD_SUCCESS → FILE_IS_READY, or ends in PARSE_FAILED /
INDEX_BUILDING_FAILED with a reason. The status lives in the database and is
the queue: a worker claims a document with a short lease that it renews while it
works, so a crashed or restarted server (or a CLI run) resumes unfinished
documents once the lease has run out. Chunks and the final status are written
in one transaction: a search sees all of a document or none of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select

from openbailian.files.store import ObjectStore, materialized
from openbailian.knowledge.bm25 import terms
from openbailian.knowledge.chunk import Chunk, ChunkRule, chunk_by_characters, chunk_document, chunk_records
from openbailian.knowledge.embed import Embedder
from openbailian.knowledge.parse import STANDARD, ParseError, Parsers, parse_table
from openbailian.storage import leases
from openbailian.storage.db import Database
from openbailian.storage.knowledge_models import (
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
)
from openbailian.storage.models import utcnow

__all__ = [
    "Status",
    "TERMINAL",
    "Ingestor",
    "IngestionWorker",
    "ingest_together",
    "record_transition",
]

logger = logging.getLogger("openbailian.knowledge")


class Status:
    INIT = "INIT"
    PARSING = "PARSING"
    PARSE_SUCCESS = "PARSE_SUCCESS"
    PARSE_FAILED = "PARSE_FAILED"
    INDEX_BUILDING = "INDEX_BUILDING"
    INDEX_BUILD_SUCCESS = "INDEX_BUILD_SUCCESS"
    INDEX_BUILDING_FAILED = "INDEX_BUILDING_FAILED"
    FILE_IS_READY = "FILE_IS_READY"


TERMINAL = frozenset({Status.FILE_IS_READY, Status.PARSE_FAILED, Status.INDEX_BUILDING_FAILED})
MAX_ATTEMPTS = 3


def record_transition(document: KnowledgeDocument, status: str, reason: str = "") -> None:
    now = utcnow()
    document.status = status
    document.reason = reason
    document.history = [*(document.history or []), {"status": status, "at": now.isoformat(), **({"reason": reason} if reason else {})}]
    document.updated_at = now


@dataclass(slots=True)
class _Prepared:
    chunks: list[Chunk]
    pages: int


class _Gone(Exception):
    """The document was deleted (or taken by another worker) while being ingested."""


class Ingestor:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        store: ObjectStore,
        *,
        lease_seconds: float = 120.0,
        batch_size: int = 32,
        parsers: Mapping[str, Parsers] | None = None,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.store = store
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size
        # The parsers of documents by their base's kind (session files take images, audio, video);
        # a kind not named here (every knowledge base) takes STANDARD, the documented types.
        self.parsers = dict(parsers or {})
        # Called with (document_id, status) on every transition (the CLI's progress bars).
        self.listeners: list[Callable[[str, str], None]] = []
        self._claims: dict[str, leases.Claim] = {}  # the documents this ingestor holds

    # ------------------------------------------------------------ queue

    async def pending(self, limit: int = 20) -> list[str]:
        """Unfinished documents nobody holds a live lease on, oldest first."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(KnowledgeDocument.id)
                .where(KnowledgeDocument.status.not_in(TERMINAL), leases.free_at(KnowledgeDocument, utcnow()))
                .order_by(KnowledgeDocument.created_at)
                .limit(limit)
            )
            return list(rows)

    async def _claim(self, document_id: str) -> leases.Claim | None:
        unfinished = KnowledgeDocument.status.not_in(TERMINAL)
        return await leases.claim(self.db, KnowledgeDocument, document_id, self.lease, unfinished)

    async def _set(self, document_id: str, status: str, reason: str = "", **values: object) -> KnowledgeDocument:
        async with self.db.transaction() as session:
            document = await session.get(KnowledgeDocument, document_id)
            if document is None:
                raise _Gone(document_id)
            record_transition(document, status, reason)
            for key, value in values.items():
                setattr(document, key, value)
        self._notify(document_id, status)
        return document

    def _notify(self, document_id: str, status: str) -> None:
        for listener in self.listeners:
            listener(document_id, status)

    # ------------------------------------------------------------ pipeline

    async def ingest(self, document_id: str) -> str | None:
        """Run one document through the pipeline; its final status, or None if not claimed."""
        held = await self._claim(document_id)
        if held is None:
            return None
        self._claims[document_id] = held
        try:
            return await self._ingest(document_id)
        except _Gone:
            return None
        finally:
            del self._claims[document_id]
            await leases.release(self.db, held)

    async def _ingest(self, document_id: str) -> str:
        async with self.db.session() as session:
            document = await session.get(KnowledgeDocument, document_id)
            if document is None:
                raise _Gone(document_id)
            base = await session.get(KnowledgeBase, document.base_id)
            if base is None:
                raise _Gone(document_id)
        if document.attempts > MAX_ATTEMPTS:
            await self._set(document_id, Status.PARSE_FAILED, f"Gave up after {MAX_ATTEMPTS} attempts")
            return Status.PARSE_FAILED
        await self._set(document_id, Status.PARSING)
        try:
            prepared = await asyncio.to_thread(
                _prepare_stored, self.store, document, base, self.parsers.get(base.kind, STANDARD)
            )
        except ParseError as error:
            await self._set(document_id, Status.PARSE_FAILED, error.reason)
            return Status.PARSE_FAILED
        except Exception as error:
            logger.exception("parsing %s failed", document_id)
            await self._set(document_id, Status.PARSE_FAILED, f"Unexpected error while parsing ({type(error).__name__})")
            return Status.PARSE_FAILED
        await self._set(document_id, Status.PARSE_SUCCESS, pages=prepared.pages)
        await self._set(document_id, Status.INDEX_BUILDING)
        try:
            vectors, term_lists = await self._embed(document_id, prepared.chunks)
        except _Gone:
            raise
        except Exception as error:
            logger.exception("embedding %s failed", document_id)
            await self._set(document_id, Status.INDEX_BUILDING_FAILED, f"Embedding failed ({type(error).__name__}: {error})"[:500])
            return Status.INDEX_BUILDING_FAILED
        await self._store(document_id, base.id, prepared.chunks, vectors, term_lists)
        self._notify(document_id, Status.FILE_IS_READY)
        return Status.FILE_IS_READY

    async def _embed(self, document_id: str, chunks: list[Chunk]) -> tuple[np.ndarray, list[str]]:
        texts = [_embedding_text(c) for c in chunks]
        parts = []
        for start in range(0, len(texts), self.batch_size):
            parts.append(await asyncio.to_thread(self.embedder.embed_passages, texts[start : start + self.batch_size]))
            if not await leases.renew(self.db, self._claims[document_id], self.lease):
                raise _Gone(document_id)  # stalled: another worker took the document over
        vectors = np.vstack(parts) if parts else np.zeros((0, self.embedder.dim), np.float32)
        term_lists = await asyncio.to_thread(lambda: [" ".join(terms(t)) for t in texts])
        return vectors.astype(np.float32), term_lists

    async def _store(
        self, document_id: str, base_id: str, chunks: list[Chunk], vectors: np.ndarray, term_lists: list[str]
    ) -> None:
        async with self.db.transaction() as session:
            document = await session.get(KnowledgeDocument, document_id)
            base = await session.get(KnowledgeBase, base_id)
            if document is None or base is None:
                raise _Gone(document_id)
            await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == document_id))
            session.add_all(
                KnowledgeChunk(
                    document_id=document_id, base_id=base_id, seq=seq, title=chunk.title, text=chunk.text,
                    pages=chunk.pages, record=chunk.record, terms=term_list, embedding=vector.tobytes(),
                )
                for seq, (chunk, vector, term_list) in enumerate(zip(chunks, vectors, term_lists, strict=True))
            )
            record_transition(document, Status.INDEX_BUILD_SUCCESS)
            record_transition(document, Status.FILE_IS_READY)
            document.chunk_count = len(chunks)
            base.version += 1
            if not base.embedder:
                base.embedder = self.embedder.name


def _embedding_text(chunk: Chunk) -> str:
    return f"{chunk.title}\n{chunk.text}" if chunk.title and chunk.record is None else chunk.text


def _rule_of(base: KnowledgeBase) -> ChunkRule | None:
    if base.chunk_size is None:
        return None
    return ChunkRule(base.chunk_size, base.overlap_size or 0, base.separator or "")


def _prepare_stored(
    store: ObjectStore, document: KnowledgeDocument, base: KnowledgeBase, parsers: Parsers = STANDARD
) -> _Prepared:
    """Parse the stored bytes (a local path, or a temporary copy of an S3 object)."""
    try:
        with materialized(store, document.storage_path, document.file_type) as path:
            return _prepare(path, document.name, base.kind, _rule_of(base), parsers)
    except FileNotFoundError as error:
        raise ParseError("The uploaded file is missing from storage") from error


def _prepare(
    path: Path, name: str, kind: str, rule: ChunkRule | None = None, parsers: Parsers = STANDARD
) -> _Prepared:
    if not path.exists():
        raise ParseError("The uploaded file is missing from storage")
    if kind == "structured":
        table = parse_table(path, name=name)
        return _Prepared(chunk_records(table), pages=1)
    document = parsers.parse(path, name=name)
    chunks = chunk_by_characters(document, rule) if rule else chunk_document(document)
    if not chunks:
        raise ParseError("The document contains no text")
    return _Prepared(chunks, pages=document.pages)


DOCUMENTS_AT_ONCE = 4  # each holds a worker thread while it waits for the model: leave some for queries


async def ingest_together(ingestor: Ingestor, document_ids: list[str], at_once: int = DOCUMENTS_AT_ONCE) -> list[str | None]:
    """Ingest documents a few at a time: one parses while another embeds, and the chunks of
    small documents share model calls (the embedder's ``PassageBatcher``). Final statuses in order."""
    gate = asyncio.Semaphore(at_once)

    async def one(document_id: str) -> str | None:
        async with gate:
            return await ingestor.ingest(document_id)

    return list(await asyncio.gather(*(one(d) for d in document_ids)))


class IngestionWorker:
    """Runs the queue in the server process: woken on new documents, polls otherwise."""

    def __init__(self, ingestor: Ingestor, *, poll_seconds: float = 5.0) -> None:
        self.ingestor = ingestor
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="knowledge-ingestion")

    def wake(self) -> None:
        self._wake.set()

    async def drain(self) -> None:
        """Process every pending document now (used by the CLI and tests)."""
        while ids := await self.ingestor.pending():
            if all(status is None for status in await ingest_together(self.ingestor, ids)):
                return

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken database must not kill the worker for good
                logger.exception("knowledge ingestion loop failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

