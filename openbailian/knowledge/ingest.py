"""The ingestion pipeline and its background worker.

One document goes INIT → PARSING → PARSE_SUCCESS → INDEX_BUILDING →
INDEX_BUILD_SUCCESS → FILE_IS_READY, or ends in PARSE_FAILED /
INDEX_BUILDING_FAILED with a reason. The status lives in the database and is
the queue: a worker claims a document with a short lease that it renews while it
works, so a crashed or restarted server (or a CLI run) resumes unfinished
documents once the lease has run out. Chunks and the final status are written
in one transaction (with their PostgreSQL search rows, when search runs there): a search
sees all of a document or none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy import delete, select, update

from openbailian.config import Settings
from openbailian.files.store import ObjectStore, materialized
from openbailian.knowledge.bm25 import terms
from openbailian.knowledge.budget import (
    Budget,
    OverBudget,
    Prepared,
    Stopped,
    in_child,
    parse_here,
    prepare,
    run_in_child,
)
from openbailian.knowledge.chunk import Chunk, ChunkRule
from openbailian.knowledge.embed import Embedder
from openbailian.knowledge.parse import STANDARD, ParseError, Parsers
from openbailian.knowledge.search import SearchRowWriter
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
    "IngestLimits",
    "InFlight",
    "IngestionWorker",
    "ingest_together",
    "record_transition",
]

logger = logging.getLogger("openbailian.knowledge")
T = TypeVar("T")


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


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """What one document may cost: its parse runs in a child process within ``parse``
    (wall-clock seconds, MiB of address space); it may have at most ``max_chunks`` chunks,
    and their embedding may take ``embed_seconds``."""

    parse: Budget = Budget(seconds=300.0, memory_mb=2048)
    embed_seconds: float = 1800.0
    max_chunks: int = 100_000

    @classmethod
    def of(cls, settings: Settings) -> IngestLimits:
        """``OPENBAILIAN_KNOWLEDGE_PARSE_TIMEOUT_SECONDS`` / ``_PARSE_MEMORY_MB`` / ``_MAX_CHUNKS`` /
        ``_EMBED_TIMEOUT_SECONDS``."""
        return cls(
            parse=Budget(settings.knowledge_parse_timeout_seconds, settings.knowledge_parse_memory_mb),
            embed_seconds=settings.knowledge_embed_timeout_seconds,
            max_chunks=settings.knowledge_max_chunks,
        )


@dataclass(eq=False, slots=True)
class InFlight:
    """A document this ingestor is working on now (what a test or an operator can look at)."""

    document_id: str
    held: leases.Claim | None = None
    stage: str = Status.PARSING
    child_pid: int | None = None  # the parsing child process, while there is one
    parsed_in_child: bool | None = None  # where it is parsed, once that is decided
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # deleted, or the claim was lost
    released: bool = False  # the claim was cleared with the final status (no release needed)
    parsing: asyncio.Semaphore | None = None  # shared by documents ingested together: parses at once


class _Gone(Exception):
    """The document was deleted (or taken by another worker) while being ingested."""


class _EmbedOverBudget(Exception):
    """Embedding the document's chunks took longer than its budget."""


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
        limits: IngestLimits | None = None,
        watch_seconds: float = 0.5,
        search_rows: SearchRowWriter | None = None,
    ) -> None:
        self.db = db
        # Writes the chunks' search rows in their transaction (PostgreSQL search; else nothing).
        self.search_rows = search_rows
        self.embedder = embedder
        self.store = store
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size
        # The parsers of documents by their base's kind (session files take images, audio, video);
        # a kind not named here (every knowledge base) takes STANDARD, the documented types.
        self.parsers = dict(parsers or {})
        self.limits = limits or IngestLimits()
        self.watch_seconds = watch_seconds  # how often a document in work is looked up (deleted?)
        # Called with (document_id, status) on every transition (the CLI's progress bars).
        self.listeners: list[Callable[[str, str], None]] = []
        # Called with (document_id, chunks embedded, chunks in all) after each embedding batch.
        self.progress_listeners: list[Callable[[str, int, int], None]] = []
        self.in_flight: dict[str, InFlight] = {}  # the documents being ingested here, now

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

    async def _set(self, document_id: str, *statuses: str, reason: str = "", **values: object) -> None:
        """Record ``statuses`` in order (one transaction); a final one clears this worker's claim."""
        work = self.in_flight.get(document_id)
        async with self.db.transaction() as session:
            document = await session.get(KnowledgeDocument, document_id)
            if document is None:
                raise _Gone(document_id)
            for status in statuses:
                record_transition(document, status, reason)
            for key, value in values.items():
                setattr(document, key, value)
            if statuses[-1] in TERMINAL and work is not None:
                self._let_go(document, work)
        for status in statuses:
            self._notify(document_id, status)
        if work is not None:
            work.stage = statuses[-1]

    @staticmethod
    def _let_go(document: KnowledgeDocument, work: InFlight) -> None:
        """Clear the claim in the transaction that finishes the document (if it is still ours)."""
        if work.held is not None and document.lease_owner == work.held.token:
            document.lease_until = None
            document.lease_owner = None
            work.released = True

    def _notify(self, document_id: str, status: str) -> None:
        for listener in self.listeners:
            listener(document_id, status)

    # ------------------------------------------------------------ pipeline

    async def ingest(self, document_id: str, parsing: asyncio.Semaphore | None = None) -> str | None:
        """Run one document through the pipeline; its final status, or None if not claimed
        (or deleted while it was being ingested: then its work is stopped and nothing stored).
        ``parsing``, when given, is held while the document is parsed."""
        held = await self._claim(document_id)
        if held is None:
            return None
        work = self.in_flight[document_id] = InFlight(document_id, held, parsing=parsing)
        pipeline = asyncio.create_task(self._ingest(document_id, work), name=f"ingest-{document_id}")
        watch = asyncio.create_task(self._watch(work, held), name=f"watch-{document_id}")
        try:
            # The watch sets work.stop when the document is gone or another worker has it now:
            # the pipeline then kills its parsing child, or stops embedding, and ends with _Gone.
            return await pipeline
        except _Gone:
            logger.info("knowledge document %s was deleted or taken over: its work stopped", document_id)
            return None
        finally:
            work.stop.set()  # ends the watch at its next beat (never cancelled mid-query)
            if not pipeline.done():  # this ingest itself was cancelled (shutting down)
                pipeline.cancel()
            await asyncio.gather(pipeline, watch, return_exceptions=True)
            del self.in_flight[document_id]
            if not work.released:
                await leases.release(self.db, held)

    def cancel(self, document_id: str) -> bool:
        """Stop the work on this document now (its row is left as it is); False if none here."""
        work = self.in_flight.get(document_id)
        if work is None:
            return False
        work.stop.set()
        return True

    async def _watch(self, work: InFlight, held: leases.Claim) -> None:
        """Return (which stops the work) when the document is deleted, its claim is lost or
        :meth:`cancel` is called; renews the claim meanwhile."""
        renew_every = self.lease.total_seconds() / 3
        renewed = time.monotonic()
        while not work.stop.is_set():
            try:
                await asyncio.wait_for(work.stop.wait(), timeout=self.watch_seconds)
                break
            except TimeoutError:
                pass
            try:
                if not await self._still_mine(held):
                    break
                if time.monotonic() - renewed >= renew_every:
                    if not await leases.renew(self.db, held, self.lease):
                        break
                    renewed = time.monotonic()
            except Exception:  # noqa: BLE001 - a database hiccup: look again at the next beat
                logger.warning("could not look up knowledge document %s", work.document_id, exc_info=True)
        work.stop.set()

    async def _still_mine(self, held: leases.Claim) -> bool:
        """One lookup by key (on SQLite without leaving the event loop): twice a second for each
        document in work, so the cheapest read there is."""
        query = select(KnowledgeDocument.lease_owner).where(KnowledgeDocument.id == held.row_id)
        owner = await self.db.read(lambda conn: conn.scalar(query), quick=True)
        return bool(owner == held.token)

    async def _start(self, work: InFlight) -> tuple[KnowledgeDocument, KnowledgeBase] | None:
        """The document and its base, now PARSING (one transaction); None when it has been tried
        too often (then it is PARSE_FAILED)."""
        document_id = work.document_id
        async with self.db.transaction() as session:
            document = await session.get(KnowledgeDocument, document_id)
            base = None if document is None else await session.get(KnowledgeBase, document.base_id)
            if document is None or base is None:
                raise _Gone(document_id)
            status = Status.PARSING if document.attempts <= MAX_ATTEMPTS else Status.PARSE_FAILED
            record_transition(document, status, "" if status == Status.PARSING else f"Gave up after {MAX_ATTEMPTS} attempts")
            if status == Status.PARSE_FAILED:
                self._let_go(document, work)
        self._notify(document_id, status)
        work.stage = status
        return (document, base) if status == Status.PARSING else None

    async def _ingest(self, document_id: str, work: InFlight) -> str:
        started = await self._start(work)
        if started is None:
            return Status.PARSE_FAILED
        document, base = started
        try:
            async with work.parsing or contextlib.nullcontext():
                prepared = await self._parse(work, document, base)
            if len(prepared.chunks) > self.limits.max_chunks:
                raise ParseError(
                    f"The document has {len(prepared.chunks)} chunks, more than the limit of "
                    f"{self.limits.max_chunks} per document"
                )
        except ParseError as error:
            await self._set(document_id, Status.PARSE_FAILED, reason=error.reason)
            return Status.PARSE_FAILED
        except _Gone:
            raise
        except Exception as error:
            logger.exception("parsing %s failed", document_id)
            await self._set(document_id, Status.PARSE_FAILED, reason=f"Unexpected error while parsing ({type(error).__name__})")
            return Status.PARSE_FAILED
        await self._set(
            document_id, Status.PARSE_SUCCESS, Status.INDEX_BUILDING, pages=prepared.pages,
            chunks_total=len(prepared.chunks), chunks_embedded=0, embedding_started_at=utcnow(),
        )
        try:
            vectors, term_lists = await self._embed(work, prepared.chunks)
        except _Gone:
            raise
        except _EmbedOverBudget as error:
            await self._set(document_id, Status.INDEX_BUILDING_FAILED, reason=str(error))
            return Status.INDEX_BUILDING_FAILED
        except Exception as error:
            logger.exception("embedding %s failed", document_id)
            reason = f"Embedding failed ({type(error).__name__}: {error})"[:500]
            await self._set(document_id, Status.INDEX_BUILDING_FAILED, reason=reason)
            return Status.INDEX_BUILDING_FAILED
        await self._store(work, base.id, prepared.chunks, vectors, term_lists)
        self._notify(document_id, Status.FILE_IS_READY)
        return Status.FILE_IS_READY

    async def _parse(self, work: InFlight, document: KnowledgeDocument, base: KnowledgeBase) -> Prepared:
        """Parse the stored bytes (a local path, or a temporary copy of an S3 object): in a
        child process within the parse budget for the pipeline's own types."""
        budget = self.limits.parse
        opened = materialized(self.store, document.storage_path, document.file_type)
        try:
            path = await asyncio.to_thread(opened.__enter__)
        except FileNotFoundError as error:
            raise ParseError("The uploaded file is missing from storage") from error
        try:
            parsers = self.parsers.get(base.kind, STANDARD)
            rule = _rule_of(base)
            args = (path, document.name, base.kind, rule)
            size = await asyncio.to_thread(_size_of, path)
            work.parsed_in_child = in_child(parsers, document.file_type, base.kind) and not parse_here(
                document.file_type, base.kind, size, rule
            )
            if work.parsed_in_child:

                def started(pid: int) -> None:
                    work.child_pid = pid

                try:
                    return await run_in_child(prepare, *args, budget=budget, started=started, stop=work.stop)
                except Stopped:
                    raise _Gone(work.document_id) from None
                finally:
                    work.child_pid = None
            # A small text file (nothing in it can take long), or OCR or speech (session files:
            # models the server holds): here, in a thread, which cannot be stopped but is let go.
            return await _until_stopped(work, asyncio.to_thread(prepare, *args, parsers), budget.seconds)
        finally:
            await asyncio.to_thread(opened.__exit__, None, None, None)

    async def _embed(self, work: InFlight, chunks: list[Chunk]) -> tuple[np.ndarray, list[str]]:
        """Embed in batches of ``batch_size``, stopping between batches when the document is
        gone or the embedding budget is spent."""
        texts = [_embedding_text(c) for c in chunks]
        # The search terms need no vectors: cut while the model runs (the first document's cut
        # loads jieba's dictionary, which would otherwise keep every document in work waiting).
        cutting = asyncio.ensure_future(asyncio.to_thread(lambda: [" ".join(terms(t)) for t in texts]))
        try:
            vectors = await self._embed_texts(work, texts)
            term_lists = await cutting
        finally:
            cutting.cancel()  # on failure: its thread finishes in the background, unused
        return vectors, term_lists

    async def _embed_texts(self, work: InFlight, texts: list[str]) -> np.ndarray:
        deadline = time.monotonic() + self.limits.embed_seconds
        parts = []
        for start in range(0, len(texts), self.batch_size):
            if work.stop.is_set():
                raise _Gone(work.document_id)
            if time.monotonic() > deadline:
                raise _EmbedOverBudget(
                    f"Embedding took longer than its budget of {self.limits.embed_seconds:g} s "
                    f"({start} of {len(texts)} chunks done) and was stopped"
                )
            batch = asyncio.get_running_loop().run_in_executor(
                _embedding_waits(), self.embedder.embed_passages, texts[start : start + self.batch_size]
            )
            parts.append(await _until_stopped(work, batch))
            await self._embedded(work.document_id, start + len(parts[-1]), len(texts))
        vectors = np.vstack(parts) if parts else np.zeros((0, self.embedder.dim), np.float32)
        return vectors.astype(np.float32)

    async def _embedded(self, document_id: str, count: int, total: int) -> None:
        """Record how many of the document's chunks are embedded (its progress); the last
        count is written with the chunks (by :meth:`_store`)."""
        if count < total:
            query = update(KnowledgeDocument).where(KnowledgeDocument.id == document_id).values(chunks_embedded=count)
            await self.db.write(lambda conn: conn.execute(query), quick=True)
        for listener in self.progress_listeners:
            listener(document_id, count, total)

    async def _store(
        self, work: InFlight, base_id: str, chunks: list[Chunk], vectors: np.ndarray, term_lists: list[str]
    ) -> None:
        document_id = work.document_id
        async with self.db.transaction() as session:
            document = await session.get(KnowledgeDocument, document_id)
            base = await session.get(KnowledgeBase, base_id)
            if document is None or base is None:
                raise _Gone(document_id)
            await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == document_id))
            stored = [
                KnowledgeChunk(
                    document_id=document_id, base_id=base_id, seq=seq, title=chunk.title, text=chunk.text,
                    pages=chunk.pages, record=chunk.record, terms=term_list, embedding=vector.tobytes(),
                )
                for seq, (chunk, vector, term_list) in enumerate(zip(chunks, vectors, term_lists, strict=True))
            ]
            session.add_all(stored)
            if self.search_rows is not None:
                await session.flush()  # the chunks' ids
                await self.search_rows.write(session, [(c.id, base_id, document_id, c.terms, c.embedding) for c in stored])
            record_transition(document, Status.INDEX_BUILD_SUCCESS)
            record_transition(document, Status.FILE_IS_READY)
            document.chunk_count = document.chunks_embedded = len(chunks)
            self._let_go(document, work)
            base.version += 1
            if not base.embedder:
                base.embedder = self.embedder.name


async def _until_stopped(work: InFlight, running: Awaitable[T], seconds: float | None = None) -> T:
    """``running``'s result; _Gone as soon as the work is stopped, OverBudget past ``seconds``
    (a thread it runs in finishes its step in the background, its result unused)."""
    step = asyncio.ensure_future(running)
    stopped = asyncio.ensure_future(work.stop.wait())
    try:
        done, _ = await asyncio.wait({step, stopped}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if step in done:
        return step.result()
    step.cancel()
    if stopped in done:
        raise _Gone(work.document_id)
    raise OverBudget(f"Parsing took longer than its budget of {seconds:g} s")


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # prepare says the file is missing


def _embedding_text(chunk: Chunk) -> str:
    return f"{chunk.title}\n{chunk.text}" if chunk.title and chunk.record is None else chunk.text


def _rule_of(base: KnowledgeBase) -> ChunkRule | None:
    if base.chunk_size is None:
        return None
    return ChunkRule(base.chunk_size, base.overlap_size or 0, base.separator or "")


# Documents in work at once, and of those being parsed (in a child process for most types).
# More are in work than are parsed so that when a model call ends, the chunks of the next
# documents already wait for the next call: with as many in work as parsed, the documents of
# one call ended together, were stored together, and the next ones were claimed and parsed
# while the model stood idle (~0.2 s) and then began with one document's chunks alone.
DOCUMENTS_AT_ONCE = 32
PARSING_AT_ONCE = 8
_WAITS: list[ThreadPoolExecutor] = []


def _embedding_waits() -> ThreadPoolExecutor:
    """The threads documents wait for the model in (mostly blocked, on the PassageBatcher):
    their own, so that waiting documents never take the default pool's threads from queries."""
    if not _WAITS:
        _WAITS.append(ThreadPoolExecutor(2 * DOCUMENTS_AT_ONCE, thread_name_prefix="ingest-embed"))
    return _WAITS[0]


async def ingest_together(ingestor: Ingestor, document_ids: list[str], at_once: int = DOCUMENTS_AT_ONCE) -> list[str | None]:
    """Ingest documents a few at a time: some parse while others embed, and the chunks of
    small documents share model calls (the embedder's ``PassageBatcher``). Final statuses in order."""
    gate, parsing = asyncio.Semaphore(at_once), asyncio.Semaphore(min(at_once, PARSING_AT_ONCE))

    async def one(document_id: str) -> str | None:
        async with gate:
            return await ingestor.ingest(document_id, parsing)

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

