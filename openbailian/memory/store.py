"""Saving facts into a memory (dedup and update) and recalling the relevant ones.

Dedup and update, kept simple on purpose. A new fact replaces an existing item
when they have the same normalised *subject* ("饮食偏好"): the extraction
prompt shows the model the related existing items and asks it to reuse their
subject for an update, so "面食" → "米饭" replaces rather than piles up. Without
a shared subject, a fact whose embedding is nearly identical to an item's
(cosine ≥ ``duplicate_threshold``; multilingual-e5 puts different facts of the
same pattern at 0.93–0.98, restatements above that) replaces that item too.
Otherwise it is added.

Recall ranks items by cosine similarity to the query plus a small recency bonus
(``recency_weight`` halving every ``half_life_days``), keeps the best ``limit``
and then as many as fit in ``budget_tokens``. On PostgreSQL with pgvector the
items' vectors live in ``memory_item_vectors`` (``vectors_pg.py``, written with the
embeddings) and recall asks PostgreSQL for the nearest items, holding nothing in the
process; elsewhere embeddings of a memory are cached in process per memory *revision*
(bumped on every change), so recall over 10k items costs one small query and one
matrix-vector product. Saving (dedup) uses the cache either way.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import MemoryNotFound
from openbailian.knowledge.embed import query_vector
from openbailian.memory.extract import Fact
from openbailian.memory.vectors_pg import PgMemoryVectors
from openbailian.storage.db import Database
from openbailian.storage.memory_models import Memory, MemoryItem
from openbailian.storage.models import utcnow

__all__ = ["Embedder", "MemoryStore", "Recalled", "Change", "estimate_tokens", "check_memory"]


class Embedder(Protocol):
    """The knowledge-base embedder's interface (openbailian.knowledge.embed): blocking,
    float32, L2-normalised. A recall's question is embedded on the query path's own threads
    (``query_vector``), never in the default executor where ingestion's work waits."""

    dim: int

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class Recalled:
    id: str
    content: str
    score: float


@dataclass(frozen=True, slots=True)
class Change:
    action: str  # "added" | "updated" | "unchanged"
    item_id: str
    content: str


@dataclass(slots=True)
class _Index:
    revision: int
    ids: list[str]
    contents: list[str]
    subjects: list[str]
    updated: np.ndarray  # POSIX seconds
    matrix: np.ndarray  # (n, dim) float32


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one per CJK character, one per ~4 other characters."""
    cjk = len(_CJK.findall(text))
    return cjk + -(-(len(text) - cjk) // 4)


async def check_memory(db: Database, memory_id: str, workspace_id: str) -> int:
    """The memory's revision; a clear error when it is unknown or in another workspace."""
    async with db.session() as session:
        row = (
            await session.execute(
                select(Memory.workspace_id, Memory.revision).where(Memory.id == memory_id)
            )
        ).first()
    if row is None or row.workspace_id != workspace_id:  # another workspace's: as if missing
        raise MemoryNotFound(f"Memory '{memory_id}' does not exist")
    return int(row.revision)


class MemoryStore:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        duplicate_threshold: float = 0.985,
        recency_weight: float = 0.02,
        half_life_days: float = 30.0,
        cache_size: int = 64,
    ) -> None:
        self._db = db
        self._embedder = embedder
        self._duplicate_threshold = duplicate_threshold
        self._recency_weight = recency_weight
        self._half_life = half_life_days * 86400
        self._cache: OrderedDict[str, _Index] = OrderedDict()
        self._cache_size = cache_size
        self._locks: dict[str, asyncio.Lock] = {}
        self._pg: PgMemoryVectors | None = None
        self._pg_checked = False

    async def _pg_vectors(self) -> PgMemoryVectors | None:
        """pgvector's table when the database has it (decided once per process)."""
        if not self._pg_checked:
            if await PgMemoryVectors.available(self._db):
                self._pg = PgMemoryVectors(self._db)
                await self._pg.prepare(self._embedder.dim)
            self._pg_checked = True
        return self._pg

    async def check(self, memory_id: str, workspace_id: str) -> None:
        await check_memory(self._db, memory_id, workspace_id)

    async def recall(
        self, memory_id: str, query: str, *, limit: int = 8, budget_tokens: int = 400
    ) -> list[Recalled]:
        pg = await self._pg_vectors()
        if pg is not None:
            return await self._recall_pg(pg, memory_id, query, limit, budget_tokens)
        index = await self._index(memory_id)
        if not index.ids:
            return []
        vector = await query_vector(self._embedder, query or " ")
        scores = index.matrix @ np.asarray(vector, dtype=np.float32)
        return self._within_budget(index.ids, index.contents, scores, index.updated, limit, budget_tokens)

    async def _recall_pg(
        self, pg: PgMemoryVectors, memory_id: str, query: str, limit: int, budget_tokens: int
    ) -> list[Recalled]:
        await self._embed_missing(memory_id)
        vector = np.asarray(await query_vector(self._embedder, query or " "), dtype=np.float32)
        # The recency bonus (at most recency_weight) reorders near neighbours only: a margin of them.
        nearest = await pg.nearest(memory_id, vector, max(4 * limit, 32))
        return self._within_budget(
            [n.id for n in nearest], [n.content for n in nearest], np.asarray([n.cosine for n in nearest]),
            np.asarray([_ts(n.updated_at) for n in nearest], dtype=np.float64), limit, budget_tokens,
        )

    def _within_budget(
        self, ids: list[str], contents: list[str], similarity: np.ndarray, updated: np.ndarray, limit: int, budget_tokens: int
    ) -> list[Recalled]:
        """The best ``limit`` by similarity plus the recency bonus, as many as fit in the budget."""
        if not ids:
            return []
        age = np.maximum(datetime.now(UTC).timestamp() - updated, 0)
        scores = similarity + self._recency_weight * np.power(0.5, age / self._half_life)
        chosen, used = [], 0
        for i in np.argsort(-scores, kind="stable")[:limit]:
            cost = estimate_tokens(contents[i]) + 2
            if used + cost > budget_tokens:
                continue
            used += cost
            chosen.append(Recalled(ids[i], contents[i], float(scores[i])))
        return chosen

    async def _embed_missing(self, memory_id: str) -> None:
        """Items added or edited by hand get their embedding (and vector row) on first recall."""
        async with self._db.session() as session:
            if await session.scalar(select(Memory.id).where(Memory.id == memory_id)) is None:
                raise MemoryNotFound(f"Memory '{memory_id}' does not exist")
            missing = (
                await session.execute(
                    select(MemoryItem.id, MemoryItem.content, MemoryItem.subject, MemoryItem.updated_at, MemoryItem.embedding)
                    .where(MemoryItem.memory_id == memory_id, MemoryItem.embedding.is_(None))
                )
            ).all()
        if missing:
            vectors = await asyncio.to_thread(self._embedder.embed_passages, [r.content for r in missing])
            fresh = {r.id: np.asarray(v, dtype=np.float32).tobytes() for r, v in zip(missing, vectors, strict=True)}
            await self._store_embeddings(missing, fresh, memory_id)

    async def remember(self, memory_id: str, facts: list[Fact]) -> list[Change]:
        if not facts:
            return []
        lock = self._locks.setdefault(memory_id, asyncio.Lock())
        async with lock:
            try:
                index = _copy(await self._index(memory_id))  # the cache stays clean if we fail
            except MemoryNotFound:  # deleted while the answer was streaming
                return []
            vectors = await asyncio.to_thread(
                self._embedder.embed_passages, [f.content for f in facts]
            )
            vectors = np.asarray(vectors, dtype=np.float32)
            async with self._db.transaction() as session:
                memory = await session.get(Memory, memory_id)
                if memory is None:  # deleted while the answer was streaming
                    return []
                changes = [
                    await self._save(session, memory_id, index, fact, vector)
                    for fact, vector in zip(facts, vectors, strict=True)
                ]
                pg = await self._pg_vectors()
                if pg is not None:
                    await session.flush()  # the items first: their vector rows refer to them
                    saved = {c.item_id: vector for c, vector in zip(changes, vectors, strict=True) if c.action != "unchanged"}
                    await pg.store(session, memory_id, list(saved.items()))
                # Incremented in SQL: a concurrent writer makes it skip a number.
                memory.revision = Memory.revision + 1
                await session.flush()
                await session.refresh(memory, ["revision"])
            if memory.revision == index.revision + 1:  # nobody else changed it: keep our index
                index.revision = memory.revision
                self._cache[memory_id] = index
            return changes

    async def _save(
        self, session: AsyncSession, memory_id: str, index: _Index, fact: Fact, vector: np.ndarray
    ) -> Change:
        target = self._match(index, fact, vector)
        now = utcnow()
        if target is not None and (item := await session.get(MemoryItem, index.ids[target])):
            if item.content == fact.content:
                return Change("unchanged", item.id, item.content)
            item.content, item.subject = fact.content, fact.subject or item.subject
            item.embedding, item.updated_at, item.source = vector.tobytes(), now, "auto"
            index.contents[target] = fact.content
            index.matrix[target] = vector
            return Change("updated", item.id, fact.content)
        item = MemoryItem(
            id=uuid.uuid4().hex,
            memory_id=memory_id,
            content=fact.content,
            subject=fact.subject,
            source="auto",
            embedding=vector.tobytes(),
            created_at=now,
            updated_at=now,
        )
        session.add(item)
        # Later facts of the same batch must see this one (two facts, same subject).
        index.ids.append(item.id)
        index.contents.append(fact.content)
        index.subjects.append(fact.subject)
        index.updated = np.append(index.updated, now.timestamp())
        index.matrix = np.vstack([index.matrix, vector[None, :]]) if index.ids[:-1] else vector[None, :]
        return Change("added", item.id, fact.content)

    def _match(self, index: _Index, fact: Fact, vector: np.ndarray) -> int | None:
        if not index.ids:
            return None
        if fact.subject:
            same = [i for i, s in enumerate(index.subjects) if s == fact.subject]
            if same:
                return max(same, key=lambda i: index.updated[i])
        scores = index.matrix @ vector
        best = int(np.argmax(scores))
        return best if scores[best] >= self._duplicate_threshold else None

    async def _index(self, memory_id: str) -> _Index:
        async with self._db.session() as session:
            revision = await session.scalar(select(Memory.revision).where(Memory.id == memory_id))
        if revision is None:
            raise MemoryNotFound(f"Memory '{memory_id}' does not exist")
        cached = self._cache.get(memory_id)
        if cached is not None and cached.revision == revision:
            self._cache.move_to_end(memory_id)
            return cached
        index = await self._load(memory_id, revision)
        self._cache[memory_id] = index
        self._cache.move_to_end(memory_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return index

    async def _load(self, memory_id: str, revision: int) -> _Index:
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(
                        MemoryItem.id,
                        MemoryItem.content,
                        MemoryItem.subject,
                        MemoryItem.updated_at,
                        MemoryItem.embedding,
                    )
                    .where(MemoryItem.memory_id == memory_id)
                    .order_by(MemoryItem.created_at)
                )
            ).all()
        missing = [r for r in rows if r.embedding is None]
        fresh: dict[str, bytes] = {}
        if missing:  # items added or edited by hand are embedded on first use
            vectors = await asyncio.to_thread(
                self._embedder.embed_passages, [r.content for r in missing]
            )
            fresh = {r.id: np.asarray(v, dtype=np.float32).tobytes() for r, v in zip(missing, vectors)}
            await self._store_embeddings(missing, fresh, memory_id)
        blobs = [r.embedding if r.embedding is not None else fresh[r.id] for r in rows]
        matrix = (
            np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(rows), -1).copy()
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        return _Index(
            revision=revision,
            ids=[r.id for r in rows],
            contents=[r.content for r in rows],
            subjects=[r.subject for r in rows],
            updated=np.array([_ts(r.updated_at) for r in rows], dtype=np.float64),
            matrix=matrix,
        )

    async def _store_embeddings(
        self, rows: Sequence[Row[str, str, str, datetime, bytes | None]], fresh: dict[str, bytes], memory_id: str
    ) -> None:
        pg = await self._pg_vectors()
        async with self._db.transaction() as session:
            stored = []
            for row in rows:
                # Only if the text is still the one we embedded (an edit may have raced us).
                result = await session.execute(
                    update(MemoryItem)
                    .where(MemoryItem.id == row.id, MemoryItem.content == row.content)
                    .values(embedding=fresh[row.id])
                )
                if getattr(result, "rowcount", 0):
                    stored.append((row.id, np.frombuffer(fresh[row.id], dtype=np.float32)))
            if pg is not None:
                await pg.store(session, memory_id, stored)


def _copy(index: _Index) -> _Index:
    return _Index(
        revision=index.revision,
        ids=list(index.ids),
        contents=list(index.contents),
        subjects=list(index.subjects),
        updated=index.updated.copy(),
        matrix=index.matrix.copy(),
    )


def _ts(value: datetime) -> float:
    if value.tzinfo is None:  # SQLite returns naive datetimes
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
