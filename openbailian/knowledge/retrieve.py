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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select

from openbailian.knowledge.bm25 import terms
from openbailian.knowledge.embed import Embedder
from openbailian.knowledge.index import MemoryIndex
from openbailian.knowledge.rerank import Ranked, Reranker, RerankError
from openbailian.knowledge.search import BaseHits, ChunkMask, SearchIndex
from openbailian.storage.db import Database
from openbailian.storage.knowledge_models import (
    KnowledgeBase,
    KnowledgeChunk,
    KnowledgeDocument,
)

__all__ = ["Hit", "DocumentFilter", "Retriever", "rrf", "READY"]

READY = "FILE_IS_READY"
RRF_K = 60
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


@dataclass(frozen=True, slots=True)
class DocumentFilter:
    """Unstructured documents only: ids, any of ``tags``, all ``metadata`` pairs."""

    document_ids: frozenset[str] | None = None
    tags: frozenset[str] | None = None
    metadata: dict[str, str] | None = None

    def matches(self, document: KnowledgeDocument) -> bool:
        if self.document_ids is not None and document.id not in self.document_ids:
            return False
        if self.tags and not self.tags.intersection(document.tags or []):
            return False
        if self.metadata:
            meta = document.meta or {}
            return all(k in meta and str(meta[k]) == v for k, v in self.metadata.items())
        return True

    @property
    def empty(self) -> bool:
        return self.document_ids is None and not self.tags and not self.metadata


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
    ) -> list[Hit]:
        """The best chunks of these bases for ``query``.

        ``document_ids``/``tags``/``metadata`` restrict unstructured bases; ``structured``
        returns exactly the matching records of structured bases (up to ``max_records``,
        best first) and leaves unstructured bases out; those are never reranked.
        ``rerank=False`` keeps the fused order; ``rerank_min_score`` replaces the configured
        threshold for this search.
        """
        doc_filter = DocumentFilter(
            frozenset(document_ids) if document_ids is not None else None,
            frozenset(tags) if tags else None,
            dict(metadata) if metadata else None,
        )
        async with self.db.session() as session:
            bases = list(await session.scalars(select(KnowledgeBase).where(KnowledgeBase.id.in_(base_ids))))
            documents = list(
                await session.scalars(
                    select(KnowledgeDocument).where(
                        KnowledgeDocument.base_id.in_(base_ids), KnowledgeDocument.status == READY
                    )
                )
            )
        masks: list[tuple[KnowledgeBase, ChunkMask]] = []
        for base in bases:
            structured_base = base.kind == "structured"
            if structured and not structured_base:
                continue
            ready = [d for d in documents if d.base_id == base.id]
            if not structured_base and not doc_filter.empty:
                ready = [d for d in ready if doc_filter.matches(d)]
            if not ready:
                continue
            mask = ChunkMask(
                document_ids=frozenset(d.id for d in ready),
                records=dict(structured) if structured and structured_base else None,
            )
            masks.append((base, mask))
        if not masks or not query.strip() and not structured:
            return []
        query_vector = await asyncio.to_thread(self.embedder.embed_query, query or " ")
        query_terms = await asyncio.to_thread(terms, query)
        limit = max_records if structured else top_k
        rerank = rerank and self.reranker is not None and not structured
        fetch = max(limit, self.rerank_candidates) if rerank else limit
        ranked = await self._rank(masks, query_vector, query_terms, fetch)
        hits = await self._hydrate(ranked)
        if not rerank:
            return hits
        min_score = self.rerank_min_score if rerank_min_score is None else rerank_min_score
        return await self._rerank(query, hits, limit, min_score)

    async def _rerank(self, query: str, hits: list[Hit], limit: int, min_score: float | None = None) -> list[Hit]:
        """The reranker's best ``limit`` of ``hits``; the fused order when it fails."""
        if not hits or self.reranker is None:
            return hits[:limit]
        documents = [_rerank_text(hit) for hit in hits]
        try:
            ranked = await asyncio.to_thread(self.reranker.rerank, query, documents, limit)
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
        masks: list[tuple[KnowledgeBase, ChunkMask]],
        query_vector: np.ndarray,
        query_terms: list[str],
        limit: int,
    ) -> list[tuple[int, float]]:
        candidates = max(limit * 4, 40)
        per_base: list[BaseHits] = [
            await self.index.search(base.id, base.version, mask, query_vector, query_terms, candidates)
            for base, mask in masks
        ]
        dense = [(score, chunk) for hits in per_base for chunk, score in hits.dense]
        keyword_rankings = [hits.keyword for hits in per_base]
        dense_ranking = [chunk for _, chunk in sorted(dense, key=lambda pair: -pair[0])]
        # BM25 scores are not comparable across bases (their own idf): interleave by rank.
        keyword_ranking: list[int] = []
        for rank in range(max((len(r) for r in keyword_rankings), default=0)):
            keyword_ranking.extend(r[rank] for r in keyword_rankings if rank < len(r))
        return rrf([dense_ranking, keyword_ranking])[:limit]

    async def _hydrate(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        if not ranked:
            return []
        ids = [chunk_id for chunk_id, _ in ranked]
        async with self.db.session() as session:
            result = await session.execute(
                select(KnowledgeChunk, KnowledgeDocument.name)
                .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id)
                .where(KnowledgeChunk.id.in_(ids), KnowledgeDocument.status == READY)
            )
            rows = {chunk.id: (chunk, name) for chunk, name in result}
        hits = []
        for chunk_id, score in ranked:
            if chunk_id not in rows:  # deleted since the index was read
                continue
            chunk, name = rows[chunk_id]
            hits.append(
                Hit(
                    chunk_id=chunk.id, base_id=chunk.base_id, document_id=chunk.document_id,
                    doc_name=name, title=chunk.title, text=chunk.text, pages=list(chunk.pages or []),
                    record=chunk.record, score=score,
                )
            )
        return hits

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
