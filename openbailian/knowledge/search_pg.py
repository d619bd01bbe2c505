"""The search port on PostgreSQL: pgvector (HNSW) for the dense side, full-text search
for the keyword side; nothing per base is held in the API process.

Schema (made by migration ``0015`` or by ``openbailian reindex``; see :data:`SCHEMA`):
``knowledge_chunk_search`` has one row per chunk (cascade-deleted with it) with the
chunk's vector in a ``vector`` column *without* a fixed dimension, its ``dim``, and its
jieba terms as a ``tsvector`` (lexemes exactly as segmented, with positions; no text
search configuration touches them). HNSW indexes are partial, one per dimension in use,
over ``embedding::vector(dim)`` (``vector_ip_ops``: the vectors are L2-normalised, so the
inner product is the cosine). A remote embedder with another dimension gets its own index
next to the bundled model's 384, and a base whose vectors are of another dimension than
the embedder's is found by its keywords only (as in process).

Rows follow the chunks lazily, per base: ``knowledge_search_sync`` holds the base
``version`` they reflect; the first search (in any process) after the version moved adds
the missing chunks under an advisory lock. Deleted chunks go by the foreign key at once.
Keyword ranking is ``ts_rank`` with length normalisation (1): PostgreSQL has no BM25;
the hybrid fusion only uses the keyword *ranks*.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import NullPool

from openbailian.knowledge.index import MemoryIndex
from openbailian.knowledge.search import BaseHits, ChunkMask, SearchIndex
from openbailian.storage.db import Database, sync_url

__all__ = [
    "PgSearch",
    "AutoSearch",
    "SearchUnavailable",
    "search_index_for",
    "pgvector_version",
    "ensure_schema",
    "ensure_dim_index",
    "rebuild",
    "reindex",
    "tsvector_literal",
    "tsquery_literal",
    "vector_literal",
    "dense_sql",
    "keyword_sql",
    "filters",
    "TABLES",
]

logger = logging.getLogger("openbailian.knowledge")

_BATCH = 5000
_LOCK_PREFIX = "openbailian-search:"
_MAX_LEXEME_BYTES = 2046

# PostgreSQL-only tables, outside the SQLAlchemy models (their types need the extension).
TABLES = frozenset({"knowledge_chunk_search", "knowledge_search_sync"})

SCHEMA = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    """CREATE TABLE IF NOT EXISTS knowledge_chunk_search (
        chunk_id integer PRIMARY KEY REFERENCES knowledge_chunks(id) ON DELETE CASCADE,
        base_id varchar(32) NOT NULL,
        document_id varchar(32) NOT NULL,
        dim integer NOT NULL,
        embedding vector,
        tsv tsvector NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS knowledge_chunk_search_doc ON knowledge_chunk_search (base_id, document_id)",
    "CREATE INDEX IF NOT EXISTS knowledge_chunk_search_tsv ON knowledge_chunk_search USING gin (tsv)",
    """CREATE TABLE IF NOT EXISTS knowledge_search_sync (
        base_id varchar(32) PRIMARY KEY REFERENCES knowledge_bases(id) ON DELETE CASCADE,
        version integer NOT NULL
    )""",
]


class SearchUnavailable(RuntimeError):
    """``OPENBAILIAN_KNOWLEDGE_SEARCH=pgvector`` on a database that cannot serve it."""


def _quote(term: str) -> str:
    return term.replace("\\", "\\\\").replace("'", "''")


def _lexemes(terms: Iterable[str]) -> list[str]:
    return [t for t in terms if t and len(t.encode()) <= _MAX_LEXEME_BYTES]


def tsvector_literal(terms: str) -> str:
    """The chunk's space-separated terms as a tsvector literal, positions kept (tf counts)."""
    return " ".join(f"'{_quote(t)}':{min(i, 16383)}" for i, t in enumerate(_lexemes(terms.split()), 1))


def tsquery_literal(terms: Sequence[str]) -> str:
    """Any of the query's terms (OR), as the in-process BM25 scores any of them."""
    return " | ".join(f"'{_quote(t)}'" for t in sorted(set(_lexemes(terms))))


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(np.char.mod("%.8g", np.asarray(vector, dtype=np.float32)).tolist()) + "]"


def _row(chunk_id: int, base_id: str, document_id: str, terms: str, embedding: bytes | None) -> tuple[Any, ...]:
    """A row for :data:`_COPY`; the vector goes as a binary float4[] (formatting it as text
    costs ~10x more than the whole copy)."""
    vector = (
        np.frombuffer(embedding, dtype=np.float32).tolist() if embedding and len(embedding) % 4 == 0 else None
    )
    return (chunk_id, base_id, document_id, len(vector) if vector else 0, vector, tsvector_literal(terms or ""))


# Rows are copied (binary) into a transaction's staging table, then cast into place.
_STAGE = (
    "CREATE TEMP TABLE knowledge_search_stage (chunk_id integer, base_id text, document_id text, "
    "dim integer, embedding real[], tsv text) ON COMMIT DROP"
)
_COPY = "COPY knowledge_search_stage FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["int4", "text", "text", "int4", "float4[]", "text"]
_FROM_STAGE = (
    "INSERT INTO knowledge_chunk_search (chunk_id, base_id, document_id, dim, embedding, tsv) "
    "SELECT chunk_id, base_id, document_id, dim, embedding::vector, tsv::tsvector FROM knowledge_search_stage "
    "ON CONFLICT (chunk_id) DO NOTHING"
)


def _copy_rows(connection: Connection, rows: Sequence[Any]) -> None:
    """Insert chunk rows (id, base, document, terms, embedding) through the staging table."""
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]  # driver_connection is Optional; a checked-out one is psycopg's
        cursor.execute(_STAGE)
        with cursor.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(_row(*row))
        cursor.execute(_FROM_STAGE)
        cursor.execute("DROP TABLE knowledge_search_stage")


async def _copy_rows_async(connection: AsyncConnection, rows: Sequence[Any]) -> None:
    raw = (await connection.get_raw_connection()).driver_connection
    async with raw.cursor() as cursor:  # type: ignore[union-attr]  # driver_connection is Optional; a checked-out one is psycopg's
        await cursor.execute(_STAGE)
        async with cursor.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                await copy.write_row(_row(*row))
        await cursor.execute(_FROM_STAGE)
        await cursor.execute("DROP TABLE knowledge_search_stage")


_MISSING = (
    "SELECT c.id, c.base_id, c.document_id, c.terms, c.embedding FROM knowledge_chunks c "
    "WHERE c.base_id = :base_id AND c.id > :after AND NOT EXISTS "
    "(SELECT 1 FROM knowledge_chunk_search s WHERE s.chunk_id = c.id) ORDER BY c.id LIMIT :limit"
)
_STORE_VERSION = text(
    "INSERT INTO knowledge_search_sync (base_id, version) VALUES (:base_id, :version) "
    "ON CONFLICT (base_id) DO UPDATE SET version = GREATEST(knowledge_search_sync.version, EXCLUDED.version)"
)


def pgvector_version(connection: Connection) -> str | None:
    """The installed pgvector extension's version in this database, or None."""
    return connection.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()


def ensure_schema(connection: Connection) -> None:
    """Extension, tables and the keyword index (idempotent; raises when the extension is missing)."""
    for statement in SCHEMA:
        connection.execute(text(statement))


def _index_name(dim: int) -> str:
    return f"knowledge_chunk_search_hnsw_{int(dim)}"


def ensure_dim_index(connection: Connection, dim: int) -> None:
    """The partial HNSW index of the vectors of this dimension (idempotent)."""
    dim = int(dim)
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"{_LOCK_PREFIX}index"})
    connection.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {_index_name(dim)} ON knowledge_chunk_search "
            f"USING hnsw ((embedding::vector({dim})) vector_ip_ops) WITH (m = 16, ef_construction = 128) "
            f"WHERE dim = {dim}"
        )
    )


def rebuild(connection: Connection, dims: Iterable[int] = ()) -> dict[str, int]:
    """Every base's rows anew from ``knowledge_chunks`` (migration ``0015``, ``openbailian reindex``):
    the HNSW indexes are dropped, the rows refilled, then an index made for each dimension
    found and for ``dims``. Returns rows per base."""
    ensure_schema(connection)
    for name in connection.execute(
        text("SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunk_search' AND indexname LIKE 'knowledge_chunk_search_hnsw_%'")
    ).scalars():
        connection.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    connection.execute(text("TRUNCATE knowledge_chunk_search, knowledge_search_sync"))
    counts: dict[str, int] = {}
    bases = connection.execute(text("SELECT id, version FROM knowledge_bases ORDER BY id")).all()
    for base_id, version in bases:
        after, total = 0, 0
        while True:
            rows = connection.execute(text(_MISSING), {"base_id": base_id, "after": after, "limit": _BATCH}).all()
            if not rows:
                break
            _copy_rows(connection, rows)
            after, total = rows[-1][0], total + len(rows)
        connection.execute(_STORE_VERSION, {"base_id": base_id, "version": version})
        counts[base_id] = total
    found = connection.execute(text("SELECT DISTINCT dim FROM knowledge_chunk_search WHERE dim > 0")).scalars()
    # The HNSW build is much faster when the graph fits in memory (this transaction only): at
    # least 1GB, never less than the server was given (1M 384-d vectors need ~3GB).
    connection.execute(
        text(
            "SELECT set_config('maintenance_work_mem', '1GB', true) "
            "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('1GB')"
        )
    )
    for dim in sorted(set(found) | {int(d) for d in dims}):
        ensure_dim_index(connection, dim)
    connection.execute(text("ANALYZE knowledge_chunk_search"))
    return counts


async def reindex(db: Database, dim: int) -> dict[str, int]:
    """Rebuild the PostgreSQL search rows of every base (``openbailian search reindex``): creates
    the extension and tables when missing, so a database migrated before pgvector was installed
    gets PostgreSQL search from here on. Rows per base."""
    if db.engine.dialect.name != "postgresql":
        raise SearchUnavailable("reindex rebuilds PostgreSQL search; on SQLite the index is in process, rebuilt by each process")
    return await asyncio.to_thread(_reindex_sync, db.url, dim)


def _reindex_sync(url: str, dim: int) -> dict[str, int]:
    # A synchronous connection: the rows go in by COPY, as in migration 0015.
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            available = connection.execute(
                text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            ).scalar()
            if not available:
                raise SearchUnavailable("the pgvector extension is not installed on this PostgreSQL server")
            return rebuild(connection, [dim])
    finally:
        engine.dispose()


class PgSearch:
    """Dense and keyword candidates computed by PostgreSQL (see the module's docstring)."""

    name = "pgvector"

    def __init__(self, db: Database, dim: int, *, ef_search: int = 200, iterative_scan: bool = True) -> None:
        self._db = db
        self._dim = int(dim)
        self._ef_search = ef_search
        self._iterative_scan = iterative_scan  # pgvector >= 0.8: filtered searches keep walking
        self._synced: dict[str, int] = {}  # base -> version known to be in the table (a hint only)

    async def prepare(self) -> None:
        async with self._db.begin() as connection:
            await connection.run_sync(ensure_dim_index, self._dim)

    def forget(self, base_id: str) -> None:
        self._synced.pop(base_id, None)

    async def aclose(self) -> None:
        self._synced.clear()

    async def sync(self, base_id: str, version: int) -> None:
        """Add the base's chunks missing from the table, once per base version."""
        if self._synced.get(base_id, -1) >= version:
            return
        async with self._db.begin() as connection:
            stored = (
                await connection.execute(
                    text("SELECT version FROM knowledge_search_sync WHERE base_id = :b"), {"b": base_id}
                )
            ).scalar()
            if stored is None or stored < version:
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _LOCK_PREFIX + base_id}
                )
                after = 0
                while True:
                    rows = (
                        await connection.execute(
                            text(_MISSING), {"base_id": base_id, "after": after, "limit": _BATCH}
                        )
                    ).all()
                    if not rows:
                        break
                    await _copy_rows_async(connection, rows)
                    after = rows[-1][0]
                await connection.execute(_STORE_VERSION, {"base_id": base_id, "version": version})
        self._synced[base_id] = version

    async def search(
        self,
        base_id: str,
        version: int,
        mask: ChunkMask,
        query_vector: np.ndarray,
        query_terms: list[str],
        k: int,
    ) -> BaseHits:
        await self.sync(base_id, version)
        where, params = filters(base_id, mask)
        dense: list[tuple[int, float]] = []
        keyword: list[int] = []
        async with self._db.begin() as connection:
            vector = np.asarray(query_vector, dtype=np.float32)
            if len(vector) == self._dim:
                await connection.execute(text(f"SET LOCAL hnsw.ef_search = {max(int(k), self._ef_search)}"))
                if self._iterative_scan:
                    await connection.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
                rows = await connection.execute(
                    text(dense_sql(self._dim, where)), {**params, "q": vector_literal(vector), "k": k}
                )
                dense = [(int(chunk), -float(distance)) for chunk, distance in rows]  # <#> is -inner product
            query = tsquery_literal(query_terms)
            if query:
                rows = await connection.execute(text(keyword_sql(where)), {**params, "tq": query, "k": k})
                keyword = [int(chunk) for chunk, in rows]
        return BaseHits(dense=dense, keyword=keyword)

    async def headers(self, base_id: str, version: int) -> set[str]:
        async with self._db.session() as session:
            names = await session.scalars(
                text(
                    "SELECT DISTINCT json_object_keys(record) FROM knowledge_chunks "
                    "WHERE base_id = :b AND json_typeof(record) = 'object'"
                ),
                {"b": base_id},
            )
            return set(names)


def dense_sql(dim: int, where: str) -> str:
    """Nearest chunks by inner product; the expression and ``dim`` predicate match the
    partial HNSW index of that dimension, so the planner can walk it."""
    typed = f"vector({int(dim)})"
    return (
        f"SELECT s.chunk_id, s.embedding::{typed} <#> CAST(:q AS {typed}) AS distance "
        f"FROM knowledge_chunk_search s WHERE s.dim = {int(dim)} AND {where} "
        "ORDER BY distance LIMIT :k"
    )


def keyword_sql(where: str) -> str:
    return (
        "SELECT s.chunk_id FROM knowledge_chunk_search s "
        f"WHERE s.tsv @@ CAST(:tq AS tsquery) AND {where} "
        "ORDER BY ts_rank(s.tsv, CAST(:tq AS tsquery), 1) DESC, s.chunk_id LIMIT :k"
    )


def filters(base_id: str, mask: ChunkMask) -> tuple[str, dict[str, Any]]:
    """SQL conditions on ``s`` (a ``knowledge_chunk_search`` row) for the base and the mask."""
    clauses = ["s.base_id = :base_id"]
    params: dict[str, Any] = {"base_id": base_id}
    if mask.document_ids is not None:
        clauses.append("s.document_id = ANY(:document_ids)")
        params["document_ids"] = sorted(mask.document_ids)
    if mask.records:
        record = ["c.id = s.chunk_id", "json_typeof(c.record) = 'object'"]
        for i, (header, value) in enumerate(sorted(mask.records.items())):
            # str(record.get(header, "")) == value, as in process (record values are strings).
            record.append(f"coalesce(c.record ->> :h{i}, '') = :v{i}")
            params[f"h{i}"], params[f"v{i}"] = header, value
        clauses.append(f"EXISTS (SELECT 1 FROM knowledge_chunks c WHERE {' AND '.join(record)})")
    return " AND ".join(clauses), params


class AutoSearch:
    """``OPENBAILIAN_KNOWLEDGE_SEARCH``: pgvector when the PostgreSQL database has it (``auto``,
    ``pgvector``), else the in-process index (``auto`` logs why; ``pgvector`` refuses)."""

    def __init__(self, db: Database, dim: int, *, mode: str, hnsw_threshold: int, ef_search: int) -> None:
        self._db, self._dim, self._mode = db, dim, mode
        self._hnsw_threshold, self._ef_search = hnsw_threshold, ef_search
        self._chosen: SearchIndex | None = None

    @property
    def name(self) -> str:
        return self._chosen.name if self._chosen is not None else "undecided"

    @property
    def chosen(self) -> SearchIndex | None:
        return self._chosen

    async def prepare(self) -> SearchIndex:
        if self._chosen is None:
            self._chosen = await self._choose()
        return self._chosen

    async def _choose(self) -> SearchIndex:
        memory = MemoryIndex(self._db, self._dim, hnsw_threshold=self._hnsw_threshold)
        if self._mode == "memory" or self._db.engine.dialect.name != "postgresql":
            if self._mode == "pgvector":
                raise SearchUnavailable("OPENBAILIAN_KNOWLEDGE_SEARCH=pgvector needs a PostgreSQL database")
            return memory
        async with self._db.begin() as connection:
            version = await connection.run_sync(pgvector_version)
            table = (await connection.execute(text("SELECT to_regclass('knowledge_chunk_search')"))).scalar()
        if version is None or table is None:
            why = (
                "the pgvector extension is not installed in this database"
                if version is None
                else "its search tables are missing (run `openbailian reindex`)"
            )
            if self._mode == "pgvector":
                raise SearchUnavailable(f"OPENBAILIAN_KNOWLEDGE_SEARCH=pgvector but {why}")
            logger.warning("knowledge search in process (memory grows with the bases): %s", why)
            return memory
        search = PgSearch(self._db, self._dim, ef_search=self._ef_search, iterative_scan=_at_least(version, (0, 8)))
        await search.prepare()
        logger.info("knowledge search in PostgreSQL (pgvector %s)", version)
        return search

    async def search(
        self,
        base_id: str,
        version: int,
        mask: ChunkMask,
        query_vector: np.ndarray,
        query_terms: list[str],
        k: int,
    ) -> BaseHits:
        chosen = await self.prepare()
        return await chosen.search(base_id, version, mask, query_vector, query_terms, k)

    async def headers(self, base_id: str, version: int) -> set[str]:
        return await (await self.prepare()).headers(base_id, version)

    def forget(self, base_id: str) -> None:
        if self._chosen is not None:
            self._chosen.forget(base_id)

    async def aclose(self) -> None:
        if self._chosen is not None:
            await self._chosen.aclose()


def _at_least(version: str, wanted: tuple[int, ...]) -> bool:
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return parts >= wanted


def search_index_for(db: Database, dim: int, settings: Any) -> SearchIndex:
    """The search port for these settings (``knowledge_search``; see ``AutoSearch``)."""
    if settings.knowledge_search == "memory" or db.engine.dialect.name != "postgresql":
        if settings.knowledge_search == "pgvector":
            raise SearchUnavailable("OPENBAILIAN_KNOWLEDGE_SEARCH=pgvector needs a PostgreSQL database")
        return MemoryIndex(db, dim, hnsw_threshold=settings.knowledge_hnsw_threshold)
    return AutoSearch(
        db, dim, mode=settings.knowledge_search,
        hnsw_threshold=settings.knowledge_hnsw_threshold, ef_search=settings.knowledge_pg_ef_search,
    )
