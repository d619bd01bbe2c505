"""Memory items' vectors in PostgreSQL (pgvector): recall ranks a memory's items there.

``memory_item_vectors`` (migration ``0017a``, or ``openbailian search reindex``) has one
row per item with an embedding: its memory, ``dim`` and the vector (no fixed dimension;
a partial HNSW index per dimension, ``vector_ip_ops`` on the L2-normalised vectors, and a
btree on the memory, which a memory's few items usually take). The row is written by
whoever stores the embedding (``MemoryStore``, in the same transaction), removed by a
trigger when the item's embedding changes or is cleared (an edit) and with the item by
its foreign key. On SQLite, or without pgvector, recall ranks in process
(``MemoryStore``'s per-revision cache).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool

from openbailian.storage.db import Database, sync_url

__all__ = ["PgMemoryVectors", "Nearest", "ensure_memory_schema", "rebuild_memory_vectors", "reindex_memory", "TABLES"]

TABLES = frozenset({"memory_item_vectors"})

_CLEAR_FUNCTION = """CREATE OR REPLACE FUNCTION openbailian_memory_vector_clear() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM memory_item_vectors WHERE item_id = NEW.id;
    RETURN NULL;
END $$"""

SCHEMA = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    """CREATE TABLE IF NOT EXISTS memory_item_vectors (
        item_id varchar(32) PRIMARY KEY REFERENCES memory_items(id) ON DELETE CASCADE,
        memory_id varchar(32) NOT NULL,
        dim integer NOT NULL,
        embedding vector NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS memory_item_vectors_memory ON memory_item_vectors (memory_id)",
    _CLEAR_FUNCTION,
    "DROP TRIGGER IF EXISTS memory_items_vector_clear ON memory_items",
    "CREATE TRIGGER memory_items_vector_clear AFTER UPDATE OF embedding ON memory_items FOR EACH ROW "
    "WHEN (OLD.embedding IS DISTINCT FROM NEW.embedding) EXECUTE FUNCTION openbailian_memory_vector_clear()",
]

_UPSERT = text(
    "INSERT INTO memory_item_vectors (item_id, memory_id, dim, embedding) "
    "VALUES (:item_id, :memory_id, :dim, CAST(:embedding AS vector)) "
    "ON CONFLICT (item_id) DO UPDATE SET memory_id = EXCLUDED.memory_id, dim = EXCLUDED.dim, embedding = EXCLUDED.embedding"
)


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(np.char.mod("%.8g", np.asarray(vector, dtype=np.float32)).tolist()) + "]"


def _index_statement(dim: int) -> str:
    dim = int(dim)
    return (
        f"CREATE INDEX IF NOT EXISTS memory_item_vectors_hnsw_{dim} ON memory_item_vectors "
        f"USING hnsw ((embedding::vector({dim})) vector_ip_ops) WHERE dim = {dim}"
    )


def ensure_memory_schema(connection: Connection, dims: Sequence[int] = ()) -> None:
    for statement in SCHEMA:
        connection.execute(text(statement))
    for dim in dims:
        connection.execute(text(_index_statement(dim)))


def rebuild_memory_vectors(connection: Connection, dims: Sequence[int] = ()) -> int:
    """Every item's row anew from ``memory_items.embedding`` (migration ``0017a``, ``search
    reindex``), an HNSW index for each dimension found and for ``dims``; rows written."""
    ensure_memory_schema(connection)
    connection.execute(text("TRUNCATE memory_item_vectors"))
    rows = connection.execute(
        text("SELECT id, memory_id, embedding FROM memory_items WHERE embedding IS NOT NULL")
    ).all()
    found: set[int] = {int(d) for d in dims}
    for item_id, memory_id, blob in rows:
        vector = np.frombuffer(blob, dtype=np.float32)
        found.add(len(vector))
        connection.execute(
            _UPSERT, {"item_id": item_id, "memory_id": memory_id, "dim": len(vector), "embedding": _literal(vector)}
        )
    for dim in sorted(found):
        connection.execute(text(_index_statement(dim)))
    return len(rows)


async def reindex_memory(db: Database, dim: int) -> int:
    """``openbailian search reindex``'s memory part (PostgreSQL with pgvector); rows written."""
    def run() -> int:
        engine = create_engine(sync_url(db.url), poolclass=NullPool)
        try:
            with engine.begin() as connection:
                return rebuild_memory_vectors(connection, [dim])
        finally:
            engine.dispose()

    return await asyncio.to_thread(run)


@dataclass(frozen=True, slots=True)
class Nearest:
    id: str
    content: str
    updated_at: datetime
    cosine: float


class PgMemoryVectors:
    """Stores and searches memory items' vectors in PostgreSQL (see the module's docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    async def available(db: Database) -> bool:
        """PostgreSQL with this table (made by migration 0017a where pgvector is installed)."""
        if db.engine.dialect.name != "postgresql":
            return False
        async with db.begin() as connection:
            found = (await connection.execute(text("SELECT to_regclass('memory_item_vectors')"))).scalar()
        return found is not None

    async def prepare(self, dim: int) -> None:
        """The HNSW index of this dimension, in a transaction of its own (made inside one that
        already wrote rows, two processes could deadlock on the table's locks)."""
        async with self._db.begin() as connection:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('openbailian-memory-vectors:index'))")
            )
            await connection.execute(text(_index_statement(dim)))

    async def store(self, session: AsyncSession, memory_id: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
        """Rows for these (item id, vector) of the memory, in the session's transaction
        (after its item rows are flushed)."""
        connection = await session.connection()
        for item_id, vector in items:
            await connection.execute(
                _UPSERT,
                {"item_id": item_id, "memory_id": memory_id, "dim": len(vector), "embedding": _literal(vector)},
            )

    async def nearest(self, memory_id: str, query: np.ndarray, limit: int) -> list[Nearest]:
        """The memory's ``limit`` items nearest ``query`` (cosine), best first."""
        dim = len(query)
        typed = f"vector({int(dim)})"
        async with self._db.begin() as connection:
            rows = await connection.execute(
                text(
                    f"SELECT i.id, i.content, i.updated_at, -(v.embedding::{typed} <#> CAST(:q AS {typed})) AS cosine "
                    "FROM memory_item_vectors v JOIN memory_items i ON i.id = v.item_id "
                    f"WHERE v.memory_id = :memory_id AND v.dim = {int(dim)} "
                    f"ORDER BY v.embedding::{typed} <#> CAST(:q AS {typed}) LIMIT :limit"
                ),
                {"q": _literal(query), "memory_id": memory_id, "limit": limit},
            )
            return [Nearest(r.id, r.content, r.updated_at, float(r.cosine)) for r in rows]
