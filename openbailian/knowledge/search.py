"""The search port: dense and keyword candidates of one knowledge base.

Two implementations answer it: :class:`~openbailian.knowledge.index.MemoryIndex`
(in process: numpy/usearch vectors and BM25, the default and SQLite's) and
:class:`~openbailian.knowledge.search_pg.PgSearch` (pgvector and PostgreSQL full-text
search, nothing held in the API process). The engine above the port
(``retrieve.py``: filters, fusion, reranking) is the same for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["ChunkMask", "BaseHits", "QueryVector", "ready_vector", "vector_of", "SearchIndex", "SearchRowWriter", "ChunkRow"]

# A question's vector, or its future while the model still computes it (on a query thread): an
# index then searches the keyword half first, meanwhile.
QueryVector: TypeAlias = np.ndarray | asyncio.Future[np.ndarray]


def ready_vector(vector: QueryVector) -> np.ndarray | None:
    """The vector when it is known already, else None."""
    if isinstance(vector, np.ndarray):
        return vector
    return vector.result() if vector.done() else None


async def vector_of(vector: QueryVector) -> np.ndarray:
    """The vector, once the model has it."""
    return vector if isinstance(vector, np.ndarray) else await vector


# A stored chunk as the search rows need it: id, base id, document id, terms, embedding.
ChunkRow = tuple[int, str, str, str, bytes | None]


@dataclass(frozen=True, slots=True)
class ChunkMask:
    """Which chunks of a base may be returned: documents (None: all), exact record values."""

    document_ids: frozenset[str] | None = None
    records: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class BaseHits:
    """One base's candidates: ``dense`` as (chunk id, cosine), ``keyword`` chunk ids best first."""

    dense: list[tuple[int, float]] = field(default_factory=list)
    keyword: list[int] = field(default_factory=list)


class SearchIndex(Protocol):
    """Candidates of one base at a given ``version`` (the base's row in the database)."""

    @property
    def name(self) -> str:
        """"memory" or "pgvector": what serves the searches."""
        ...

    async def search(
        self,
        base_id: str,
        version: int,
        mask: ChunkMask,
        query_vector: QueryVector,
        query_terms: list[str],
        k: int,
    ) -> BaseHits:
        """Best ``k`` dense and best ``k`` keyword chunks within ``mask``; the keyword ones
        first when the vector is still being computed."""
        ...

    async def headers(self, base_id: str, version: int) -> set[str]:
        """Column names of a structured base's records."""
        ...

    def forget(self, base_id: str) -> None:
        """The base is gone: drop whatever is held for it."""

    async def aclose(self) -> None: ...


class SearchRowWriter(Protocol):
    """Writes the search rows of chunks in the transaction that stores them (PostgreSQL
    search: ``search_pg.SearchRows``; the in-process index reads the chunks themselves)."""

    async def write(self, session: AsyncSession, rows: Sequence[ChunkRow]) -> None: ...
