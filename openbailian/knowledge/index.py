"""In-memory search state per knowledge base, kept in step with the database.

The database is the truth: chunks (text, terms, embedding) are stored there.
Each base's state (vectors + BM25) is built from it on first use and updated
by delta whenever the base's ``version`` moves (any process may have added or
deleted documents: the server's worker, or the CLI). Vectors of deleted
chunks are zeroed and dropped from the graph at the next search, before it runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import select

from openbailian.knowledge.bm25 import BM25Index
from openbailian.knowledge.embed import run_for_query
from openbailian.knowledge.search import BaseHits, ChunkMask, QueryVector, ready_vector, vector_of
from openbailian.knowledge.vectors import ExactVectorIndex, HnswVectorIndex
from openbailian.storage.db import Database
from openbailian.storage.knowledge_models import KnowledgeChunk

__all__ = ["BaseState", "MemoryIndex", "ChunkMask"]

T = TypeVar("T")

_LOAD_BATCH = 2000
# Bases up to this many live chunks are searched on the event loop (well under a millisecond);
# larger ones on the query path's threads.
_SEARCH_IN_LOOP = 2000


@dataclass
class BaseState:
    dim: int
    version: int = -1
    chunk_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    row_of: dict[int, int] = field(default_factory=dict)
    doc_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    doc_code_of: dict[str, int] = field(default_factory=dict)
    records: list[dict[str, Any] | None] = field(default_factory=list)
    vectors: ExactVectorIndex | HnswVectorIndex = field(init=False)
    bm25: BM25Index = field(default_factory=BM25Index)
    dead: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)  # hits() holds it across dense() and keyword()

    def __post_init__(self) -> None:
        self.vectors = ExactVectorIndex(self.dim)

    @property
    def exact(self) -> ExactVectorIndex:
        vectors = self.vectors
        return vectors.exact if isinstance(vectors, HnswVectorIndex) else vectors

    def live_count(self) -> int:
        return len(self.row_of)

    def append(self, rows: list[tuple[int, str, dict[str, str] | None, str, bytes | None]]) -> None:
        if not rows:
            return
        vectors = np.zeros((len(rows), self.dim), dtype=np.float32)
        codes = np.empty(len(rows), dtype=np.int32)
        start = len(self.chunk_ids)
        for i, (chunk_id, document_id, record, _terms, embedding) in enumerate(rows):
            if embedding is not None and len(embedding) == self.dim * 4:
                vectors[i] = np.frombuffer(embedding, dtype=np.float32)
            codes[i] = self.doc_code_of.setdefault(document_id, len(self.doc_code_of))
            self.row_of[chunk_id] = start + i
            self.records.append(record)
        self.chunk_ids = np.concatenate([self.chunk_ids, [r[0] for r in rows]]).astype(np.int64)
        self.doc_codes = np.concatenate([self.doc_codes, codes])
        self.vectors.add(vectors)
        self.bm25.add([r[3].split() for r in rows])

    def remove(self, chunk_ids: Iterable[int]) -> None:
        rows = np.asarray([self.row_of.pop(c) for c in chunk_ids if c in self.row_of], dtype=np.int64)
        if len(rows):
            self.vectors.remove(rows)
            self.bm25.remove(rows)
            for row in rows:
                self.records[row] = None
            self.dead += len(rows)

    def mask(self, chunk_mask: ChunkMask) -> np.ndarray | None:
        mask: np.ndarray | None = None
        if chunk_mask.document_ids is not None:
            codes = [self.doc_code_of[d] for d in chunk_mask.document_ids if d in self.doc_code_of]
            mask = np.isin(self.doc_codes, np.asarray(codes, dtype=np.int32))
        if chunk_mask.records:
            wanted = chunk_mask.records
            matches = np.fromiter(
                (
                    record is not None and all(str(record.get(k, "")) == v for k, v in wanted.items())
                    for record in self.records
                ),
                dtype=bool,
                count=len(self.records),
            )
            mask = matches if mask is None else mask & matches
        return mask

    def headers(self) -> set[str]:
        found: set[str] = set()
        for record in self.records:
            if record:
                found.update(record)
        return found

    def hits(self, chunk_mask: ChunkMask, query_vector: np.ndarray, query_terms: list[str], k: int) -> BaseHits:
        with self.lock:
            return BaseHits(dense=self.dense(chunk_mask, query_vector, k), keyword=self.keyword(chunk_mask, query_terms, k))

    def dense(self, chunk_mask: ChunkMask, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        with self.lock:
            # With a structured filter every matching record (up to ``k``)
            # comes back from the dense side: the ranking only orders them.
            found = self.vectors.search(query_vector, k, self.mask(chunk_mask))
            return [(int(self.chunk_ids[row]), score) for row, score in found]

    def keyword(self, chunk_mask: ChunkMask, query_terms: list[str], k: int) -> list[int]:
        with self.lock:
            found = self.bm25.search(query_terms, k, self.mask(chunk_mask))
            return [int(self.chunk_ids[row]) for row, _ in found]


class MemoryIndex:
    """Per-base :class:`BaseState`, synchronised from the database by version: the
    in-process implementation of the search port (:class:`~openbailian.knowledge.search.SearchIndex`)."""

    name = "memory"

    def __init__(self, db: Database, dim: int, *, hnsw_threshold: int = 10_000) -> None:
        self._db = db
        self._dim = dim
        self._hnsw_threshold = hnsw_threshold
        self._states: dict[str, BaseState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._graph_tasks: dict[str, asyncio.Task[None]] = {}

    def forget(self, base_id: str) -> None:
        self._states.pop(base_id, None)

    async def search(
        self,
        base_id: str,
        version: int,
        mask: ChunkMask,
        query_vector: QueryVector,
        query_terms: list[str],
        k: int,
    ) -> BaseHits:
        state = await self.state(base_id, version)
        here = state.live_count() <= _SEARCH_IN_LOOP

        async def run(search: Callable[..., T], *args: Any) -> T:
            # Up to _SEARCH_IN_LOOP chunks, microseconds of numpy: cheaper than the hop to a thread.
            return search(*args) if here else await run_for_query(search, *args)

        vector = ready_vector(query_vector)
        if vector is not None:
            return await run(state.hits, mask, vector, query_terms, k)
        keyword = await run(state.keyword, mask, query_terms, k)
        return BaseHits(dense=await run(state.dense, mask, await vector_of(query_vector), k), keyword=keyword)

    async def headers(self, base_id: str, version: int) -> set[str]:
        state = await self.state(base_id, version)
        with state.lock:
            return state.headers()

    async def state(self, base_id: str, version: int) -> BaseState:
        state = self._states.get(base_id)
        if state is not None and state.version == version:
            return state
        lock = self._locks.setdefault(base_id, asyncio.Lock())
        async with lock:
            state = self._states.get(base_id)
            if state is None or state.version != version:
                state = await self._sync(base_id, version, state)
                self._states[base_id] = state
        self._maybe_build_graph(base_id, state)
        return state

    async def _sync(self, base_id: str, version: int, state: BaseState | None) -> BaseState:
        async with self._db.session() as session:
            current = set(
                await session.scalars(select(KnowledgeChunk.id).where(KnowledgeChunk.base_id == base_id))
            )
        if state is None or state.dead > max(1000, state.live_count()) // 3:
            state = BaseState(dim=self._dim)  # fresh: compacts away removed rows
        removed = [c for c in state.row_of if c not in current]
        added = sorted(c for c in current if c not in state.row_of)
        if removed:
            with state.lock:
                state.remove(removed)
        for start in range(0, len(added), _LOAD_BATCH):
            batch = added[start : start + _LOAD_BATCH]
            async with self._db.session() as session:
                result = await session.execute(
                    select(
                        KnowledgeChunk.id, KnowledgeChunk.document_id, KnowledgeChunk.record,
                        KnowledgeChunk.terms, KnowledgeChunk.embedding,
                    ).where(KnowledgeChunk.id.in_(batch)).order_by(KnowledgeChunk.id)
                )
                rows = [tuple(r) for r in result]
            await run_for_query(self._append_locked, state, rows)  # a search waits on it: not the default executor
        state.version = version
        return state

    @staticmethod
    def _append_locked(state: BaseState, rows: list[Any]) -> None:
        with state.lock:
            state.append(rows)

    def _maybe_build_graph(self, base_id: str, state: BaseState) -> None:
        """Past the threshold, build an HNSW graph in the background; exact search serves meanwhile."""
        if isinstance(state.vectors, HnswVectorIndex) or state.live_count() < self._hnsw_threshold:
            return
        task = self._graph_tasks.get(base_id)
        if task is not None and not task.done():
            return
        self._graph_tasks[base_id] = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self._build_graph, state)
        )

    @staticmethod
    def _build_graph(state: BaseState) -> None:
        # Built outside the lock (searches go on with exact search), then caught up under it.
        with state.lock:
            exact = state.exact
        graph = HnswVectorIndex(exact)
        with state.lock:
            if state.vectors is exact:
                graph.catch_up()
                state.vectors = graph

    async def aclose(self) -> None:
        for task in self._graph_tasks.values():
            if not task.done():
                await asyncio.gather(task, return_exceptions=True)
        self._graph_tasks.clear()
        self._states.clear()
