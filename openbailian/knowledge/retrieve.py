"""Hybrid retrieval: dense (embeddings) + BM25 (jieba terms), fused by reciprocal rank,
then optionally reranked by a rerank model (``rerank.py``).

Filters narrow the candidates *before* ranking: documents (ids, tags, metadata,
all must match) and, on structured bases, exact ``header = value`` matches on
records. The caller (``services``/``source``) validates ids and workspaces;
this module only searches the bases it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import Connection, bindparam, exists, select

from openbailian.knowledge.bm25 import known_query_terms, query_terms, quick_query_terms
from openbailian.knowledge.embed import Embedder, QueryCache, run_for_query, start_query_vector
from openbailian.knowledge.index import MemoryIndex
from openbailian.knowledge.rerank import Ranked, Reranker, RerankError
from openbailian.knowledge.search import ChunkMask, QueryVector, SearchIndex
from openbailian.storage.db import Database
from openbailian.storage.knowledge_models import (
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
)

__all__ = ["Hit", "DocumentFilter", "KnownBase", "QueryAhead", "Retriever", "rrf", "READY", "has_ready_document"]

READY = "FILE_IS_READY"
RRF_K = 60
# Chunks' hit columns kept in process (each with its base's version when read), so a search
# whose best chunks were shown before reads nothing after the index: its response waits on
# the embedding alone.
HIT_ROWS_KEPT = 4096
logger = logging.getLogger("openbailian.knowledge")


@dataclass(slots=True)
class Hit:
    chunk_id: int
    base_id: str
    document_id: str
    doc_name: str
    title: str
    text: str
    pages: list[int] = field(default_factory=list)
    record: dict[str, Any] | None = None
    score: float = 0.0
    source_id: str | None = None  # the data-center document it came from, when imported

    @property
    def public_id(self) -> str:
        """The id callers know the document by (the data-center id of an imported one)."""
        return self.source_id or self.document_id


@dataclass(frozen=True, slots=True)
class DocumentFilter:
    """Unstructured documents only: ids, any of ``tags``, all ``metadata`` pairs."""

    document_ids: frozenset[str] | None = None
    tags: frozenset[str] | None = None
    metadata: dict[str, str] | None = None

    def matches(self, document_id: str, tags: Sequence[str] | None, meta: Mapping[str, Any] | None) -> bool:
        if self.document_ids is not None and document_id not in self.document_ids:
            return False
        if self.tags and not self.tags.intersection(tags or []):
            return False
        if self.metadata:
            meta = meta or {}
            return all(k in meta and str(meta[k]) == v for k, v in self.metadata.items())
        return True

    @property
    def empty(self) -> bool:
        return self.document_ids is None and not self.tags and not self.metadata


@dataclass(frozen=True, slots=True)
class KnownBase:
    """A base as the caller just read it: enough to search it without reading it again."""

    id: str
    kind: str
    version: int
    ready: bool  # has a ready document


@dataclass(frozen=True, slots=True)
class QueryAhead:
    """A new question's vector and BM25 terms, computed since the caller knew the question
    (:meth:`Retriever.ahead`), while it reads and checks the rest of its request."""

    query: str
    vector: asyncio.Future[np.ndarray]  # already on a query thread
    terms: tuple[str, ...] | asyncio.Future[tuple[str, ...]]

    async def started(self) -> tuple[QueryVector, list[str]]:
        """Its terms (cut by now, for a short question) and its vector's future, which the index
        awaits only for the dense half (the keyword half is searched while the model runs)."""
        terms = self.terms if isinstance(self.terms, tuple) else await self.terms
        return self.vector, list(terms)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A caller whose checks failed never awaits its :class:`QueryAhead`: its error is not news."""
    if not future.cancelled():
        future.exception()


def has_ready_document() -> Any:
    """``EXISTS`` a ready document of the ``KnowledgeBase`` row being selected (a column for its select)."""
    return (
        exists()
        .where(KnowledgeDocument.base_id == KnowledgeBase.id, KnowledgeDocument.status == READY)
        .correlate(KnowledgeBase)
    )


def rrf(rankings: Sequence[Sequence[Any]], k: int = RRF_K) -> list[tuple[Any, float]]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings an item is in."""
    scores: dict[Any, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


class Retriever:
    """Searches bases; with a ``reranker``, the best ``rerank_candidates`` fused hits are
    re-scored and those under ``rerank_min_score`` dropped."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        hnsw_threshold: int = 10_000,
        reranker: Reranker | None = None,
        rerank_candidates: int = 20,
        rerank_min_score: float | None = None,
        index: SearchIndex | None = None,
    ) -> None:
        """``index``: the search port (default: the in-process :class:`MemoryIndex`)."""
        self.db = db
        self.embedder = embedder
        self.index: SearchIndex = index or MemoryIndex(db, embedder.dim, hnsw_threshold=hnsw_threshold)
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.rerank_min_score = rerank_min_score
        # chunk id → (its base's version when it was read, its hit columns); valid while the
        # base is at that version (every change of a base's chunks moves it, so a chunk id
        # SQLite hands out again after a delete is never mistaken for the old chunk).
        self._hit_rows: OrderedDict[int, tuple[int, Any]] = OrderedDict()

    async def search(
        self,
        base_ids: Sequence[str],
        query: str,
        *,
        top_k: int = 5,
        document_ids: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        metadata: dict[str, str] | None = None,
        structured: dict[str, str] | None = None,
        max_records: int = 50,
        rerank: bool = True,
        rerank_min_score: float | None = None,
        known: Sequence[KnownBase] | None = None,
        ahead: QueryAhead | None = None,
    ) -> list[Hit]:
        """The best chunks of these bases for ``query``.

        ``document_ids``/``tags``/``metadata`` restrict unstructured bases; ``structured``
        returns exactly the matching records of structured bases (up to ``max_records``,
        best first) and leaves unstructured bases out; those are never reranked.
        ``rerank=False`` keeps the fused order; ``rerank_min_score`` replaces the configured
        threshold for this search. ``known``: the bases as the caller has just read them (then
        an unfiltered search reads nothing before the index). ``ahead``: this question's vector
        and terms, already being computed (:meth:`ahead`).
        """
        doc_filter = DocumentFilter(
            frozenset(document_ids) if document_ids is not None else None,
            frozenset(tags) if tags else None,
            dict(metadata) if metadata else None,
        )
        records = dict(structured) if structured else None
        if known is not None and doc_filter.empty:
            wanted = set(base_ids)
            masks = _masks([b for b in known if b.ready and b.id in wanted], records, {})
        else:
            masks = await self.db.read(lambda conn: _searched(conn, base_ids, doc_filter, records))
        if not masks or not query.strip() and not structured:
            return []
        if ahead is not None and ahead.query == query:
            query_vector, query_terms = await ahead.started()
        else:
            query_vector, query_terms = await self._understand(query)
        limit = max_records if structured else top_k
        rerank = rerank and self.reranker is not None and not structured
        fetch = max(limit, self.rerank_candidates) if rerank else limit
        ranked = await self._rank(masks, query_vector, query_terms, fetch)
        hits = await self._hydrate(ranked, {base_id: version for base_id, version, _ in masks})
        if not rerank:
            return hits
        min_score = self.rerank_min_score if rerank_min_score is None else rerank_min_score
        return await self._rerank(query, hits, limit, min_score)

    def ahead(self, query: str) -> QueryAhead | None:
        """Start a new question's vector now (on a query thread) and its terms, so the model runs
        while the caller reads and checks its options; pass the result to :meth:`search`. None
        for a blank or a repeated question (its two come from the LRUs at once). Call it on the
        event loop."""
        if not query.strip() or self._known(query) is not None:
            return None
        return self._start(query)

    def _start(self, query: str) -> QueryAhead:
        vector = start_query_vector(self.embedder, query or " ")
        vector.add_done_callback(_retrieved)
        # A short question is cut here, while the model runs: cheaper than another thread.
        terms: tuple[str, ...] | asyncio.Future[tuple[str, ...]] | None = quick_query_terms(query)
        if terms is None:
            terms = asyncio.ensure_future(run_for_query(query_terms, query))
            terms.add_done_callback(_retrieved)
        return QueryAhead(query, vector, terms)

    def _known(self, query: str) -> tuple[np.ndarray, list[str]] | None:
        """A repeated question's vector and terms, from their LRUs (no thread at all)."""
        vector = self.embedder.cached(query or " ") if isinstance(self.embedder, QueryCache) else None
        words = known_query_terms(query) if vector is not None else None
        return (vector, list(words)) if vector is not None and words is not None else None

    async def _understand(self, query: str) -> tuple[QueryVector, list[str]]:
        """The query's vector and BM25 terms; a new query's two are computed side by side (and
        its vector may still be in the model's hands: :meth:`QueryAhead.started`)."""
        known = self._known(query)
        if known is not None:
            return known
        return await self._start(query).started()

    async def _rerank(self, query: str, hits: list[Hit], limit: int, min_score: float | None = None) -> list[Hit]:
        """The reranker's best ``limit`` of ``hits``; the fused order when it fails."""
        if not hits or self.reranker is None:
            return hits[:limit]
        documents = [_rerank_text(hit) for hit in hits]
        try:
            ranked = await run_for_query(self.reranker.rerank, query, documents, limit)
            return self._keep(hits, ranked, limit, min_score)
        except Exception as error:  # noqa: BLE001 - any reranker failure
            # Retrieval still answers: a reranker outage only costs ranking quality.
            unexpected = not isinstance(error, RerankError)
            logger.warning("reranking failed, keeping the fused order: %s", error, exc_info=unexpected)
            return hits[:limit]

    def _keep(self, hits: list[Hit], ranked: list[Ranked], limit: int, min_score: float | None) -> list[Hit]:
        kept = []
        for item in ranked[:limit]:
            if min_score is not None and item.score < min_score:
                continue
            kept.append(replace(hits[item.index], score=item.score))
        return kept

    async def _rank(
        self,
        masks: list[tuple[str, int, ChunkMask]],
        query_vector: QueryVector,
        query_terms: list[str],
        limit: int,
    ) -> list[tuple[int, float]]:
        candidates = max(limit * 4, 40)
        pending = isinstance(query_vector, asyncio.Future) and not query_vector.done()
        searches = [
            self.index.search(base_id, version, mask, query_vector, query_terms, candidates)
            for base_id, version, mask in masks
        ]
        if len(searches) > 1 and pending:
            per_base = list(await asyncio.gather(*searches))  # every base's keyword half while the model runs
        else:
            per_base = [await search for search in searches]
        dense = [(score, chunk) for hits in per_base for chunk, score in hits.dense]
        keyword_rankings = [hits.keyword for hits in per_base]
        dense_ranking = [chunk for _, chunk in sorted(dense, key=lambda pair: -pair[0])]
        # BM25 scores are not comparable across bases (their own idf): interleave by rank.
        keyword_ranking: list[int] = []
        for rank in range(max((len(r) for r in keyword_rankings), default=0)):
            keyword_ranking.extend(r[rank] for r in keyword_rankings if rank < len(r))
        return rrf([dense_ranking, keyword_ranking])[:limit]

    async def _hydrate(self, ranked: list[tuple[int, float]], versions: Mapping[str, int]) -> list[Hit]:
        """The ranked chunks with their documents' names: kept ones as kept (their base still at
        the version they were read at), the rest in one round trip. ``versions``: the searched
        bases' versions, as this search read them."""
        if not ranked:
            return []
        rows = self._kept_rows(ranked, versions)
        missing = [chunk_id for chunk_id, _ in ranked if chunk_id not in rows]
        if missing:
            read = await self.db.read(lambda conn: list(conn.execute(_HITS, {"ids": missing})), quick=True)
            for fresh in read:
                rows[fresh.id] = fresh
                self._keep_row(fresh, versions)
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:  # deleted since the index was read
                continue
            hits.append(
                Hit(
                    chunk_id=row.id, base_id=row.base_id, document_id=row.document_id, doc_name=row.name,
                    title=row.title, text=row.text, pages=list(row.pages or []), record=row.record, score=score,
                    source_id=row.source_id,
                )
            )
        return hits

    def _kept_rows(self, ranked: list[tuple[int, float]], versions: Mapping[str, int]) -> dict[int, Any]:
        rows = {}
        for chunk_id, _ in ranked:
            kept = self._hit_rows.get(chunk_id)
            if kept is None:
                continue
            version, row = kept
            if versions.get(row.base_id) == version:
                rows[chunk_id] = row
                self._hit_rows.move_to_end(chunk_id)
            else:  # its base has moved on since
                del self._hit_rows[chunk_id]
        return rows

    def _keep_row(self, row: Any, versions: Mapping[str, int]) -> None:
        version = versions.get(row.base_id)
        if version is None:
            return
        self._hit_rows[row.id] = (version, row)
        if len(self._hit_rows) > HIT_ROWS_KEPT:
            self._hit_rows.popitem(last=False)

    async def headers(self, base_id: str, version: int) -> set[str]:
        """Column names of a structured base's records (for validating filters)."""
        return await self.index.headers(base_id, version)

    async def aclose(self) -> None:
        await self.index.aclose()
        if self.reranker is not None:
            self.reranker.close()


def _rerank_text(hit: Hit) -> str:
    """What the rerank model reads: the heading path gives a bare section its subject."""
    if hit.title and hit.record is None and not hit.text.startswith(hit.title):
        return f"{hit.title}\n{hit.text}"
    return hit.text


_HITS = (
    select(
        KnowledgeChunk.id, KnowledgeChunk.base_id, KnowledgeChunk.document_id, KnowledgeChunk.title,
        KnowledgeChunk.text, KnowledgeChunk.pages, KnowledgeChunk.record, KnowledgeDocument.name,
        KnowledgeDocument.source_id,
    )
    .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id)
    .where(KnowledgeChunk.id.in_(bindparam("ids", expanding=True)), KnowledgeDocument.status == READY)
)


def _searched(
    conn: Connection, base_ids: Sequence[str], doc_filter: DocumentFilter, records: dict[str, str] | None
) -> list[tuple[str, int, ChunkMask]]:
    """(base id, version, mask) of the bases to search: those with a ready document (after the
    filters, when there are some), in the order given. One round trip unless documents are filtered.

    Chunks exist only for ready documents (they are written with that status, and deleted
    when a document is ingested again), so an unfiltered base needs no list of documents."""
    found = {
        row.id: KnownBase(row.id, row.kind, row.version, True)
        for row in conn.execute(
            select(KnowledgeBase.id, KnowledgeBase.kind, KnowledgeBase.version).where(
                KnowledgeBase.id.in_(list(base_ids)), has_ready_document()
            )
        )
    }
    bases = [found[base_id] for base_id in dict.fromkeys(base_ids) if base_id in found]
    chosen: dict[str, set[str]] = {}
    filtered = [b.id for b in bases if b.kind != "structured"] if not doc_filter.empty and not records else []
    if filtered:
        chosen = {base_id: set() for base_id in filtered}
        query = select(
            KnowledgeDocument.id, KnowledgeDocument.base_id, KnowledgeDocument.tags, KnowledgeDocument.meta
        ).where(KnowledgeDocument.base_id.in_(filtered), KnowledgeDocument.status == READY)
        if doc_filter.document_ids is not None:
            query = query.where(KnowledgeDocument.id.in_(list(doc_filter.document_ids)))
        for row in conn.execute(query):
            if doc_filter.matches(row.id, row.tags, row.meta):
                chosen[row.base_id].add(row.id)
    return _masks(bases, records, chosen)


def _masks(
    bases: Sequence[KnownBase], records: dict[str, str] | None, chosen: dict[str, set[str]]
) -> list[tuple[str, int, ChunkMask]]:
    """The searches of these (ready) bases; ``chosen``: the matching documents of filtered bases."""
    if records:  # a structured filter searches structured bases alone, on their records
        return [(b.id, b.version, ChunkMask(records=records)) for b in bases if b.kind == "structured"]
    masks = []
    for base in bases:
        if base.id not in chosen:
            masks.append((base.id, base.version, ChunkMask()))
        elif chosen[base.id]:
            masks.append((base.id, base.version, ChunkMask(document_ids=frozenset(chosen[base.id]))))
    return masks
