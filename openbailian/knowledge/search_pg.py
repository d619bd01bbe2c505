"""The search port on PostgreSQL: pgvector (HNSW) for the dense side, BM25 over a
``tsvector`` for the keyword side; nothing per base is held in the API process.

Schema (made by migrations ``0015``/``0017``/``0023``/``0024`` or by ``openbailian search
reindex``; see :data:`SCHEMA`): ``knowledge_chunk_search`` has one row per chunk with the
chunk's vector in a ``vector`` column *without* a fixed dimension, its ``dim``, its jieba
terms as a ``tsvector`` and its ``length`` (terms); ``knowledge_chunk_cells`` the chunk's
keyword cells (below). The lexemes are exactly the segmented terms (no
text search configuration touches them) and each carries positions 1..tf, so the
tsvector holds the term frequencies. HNSW indexes are partial, one per dimension in use,
over ``embedding::vector(dim)`` (``vector_ip_ops``: the vectors are L2-normalised, so the
inner product is the cosine). A remote embedder with another dimension gets its own index
next to the bundled model's 384, and a base whose vectors are of another dimension than
the embedder's is found by its keywords only (as in process).

Rows are written when chunks are stored: the ingesting worker copies them in the same
transaction as the chunks (:class:`SearchRows`), and a trigger on ``knowledge_chunks``
deletes them with the chunks (one statement per deleting statement). Triggers on
``knowledge_chunk_search`` keep the BM25 statistics beside them: ``knowledge_term_stats``
(per base and term, the number of chunks containing it) and ``knowledge_search_stats``
(per base, chunks and total length); one base's statistics are changed by one
transaction at a time (an advisory lock), so concurrent ingestion cannot deadlock on them.

Keyword ranking is BM25 as in process (``bm25.BM25Index``: k1 1.2, b 0.75, the same idf)
with the base's statistics; within a filter the idf stays the base's (in process it is
the filtered rows'). It is exact and scores few rows, by impact classes (``0023``): each
chunk's ``knowledge_chunk_cells`` row (written by the statistics trigger from the search
row's terms) holds a ``cells`` tsvector of one lexeme per term, 'base term tf-class
length-class', under a GIN index, and ``knowledge_term_cells`` counts a base's chunks per
(term, tf class, length class). A term's BM25 weight grows with tf and shrinks with the
length, so a cell bounds the weight of every chunk in it whatever the base's average
length (``cell_bound``). A search reads the totals and its terms' cells (one trip), scores
the chunks of the cells of the largest bounds first (about ``_FIRST_PASS_POSTINGS``; the
rare terms' and the common terms' highest-tf cells), and takes the k-th score found as the
threshold; the second pass scores every chunk whose cells' bounds can still add up to it,
found by one tsquery that the GIN index answers (WAND pushed into the index: a chunk in a
common term's cell must hold enough of the other terms too; ``threshold_query``). Any chunk
left out cannot reach the top k. Exact scores are computed in SQL from the chunk's tsvector
(only the query's lexemes: ``setweight`` + ``ts_filter``). When a threshold query would be
too large, the terms of the smallest bounds are left out of it with their largest bounds
taken off the threshold; when even that fails, passes of the cells that lower the bound of
unseen chunks most per chunk follow (at most ``_MAX_PASSES``), and only a query still not
done after them is no longer exact.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.pool import NullPool

from openbailian.errors import SearchBusy
from openbailian.knowledge.bm25 import BM25Index
from openbailian.knowledge.index import MemoryIndex
from openbailian.knowledge.search import (
    BaseHits,
    ChunkMask,
    ChunkRow,
    QueryVector,
    SearchIndex,
    ready_vector,
    vector_of,
)
from openbailian.storage.db import Database, sync_url

__all__ = [
    "PgSearch",
    "AutoSearch",
    "SearchRows",
    "SearchUnavailable",
    "KeywordTerm",
    "search_index_for",
    "pgvector_version",
    "ensure_schema",
    "ensure_dim_index",
    "build_dim_index",
    "index_state",
    "rebuild",
    "upgrade",
    "add_cells",
    "fill_cells",
    "CELLS_OF_ROW",
    "reindex",
    "tsvector_literal",
    "tsquery_literal",
    "vector_literal",
    "dense_sql",
    "keyword_sql",
    "keyword_terms",
    "Cell",
    "CellPlan",
    "cell_bound",
    "term_weight",
    "cells_query",
    "threshold_query",
    "filters",
    "TABLES",
]

logger = logging.getLogger("openbailian.knowledge")

_LOCK_PREFIX = "openbailian-search:"
_MAX_LEXEME_BYTES = 2046
_MAX_POSITIONS = 256  # PostgreSQL keeps at most 256 positions per lexeme: tf counts up to there
# The first keyword pass scores the chunks of the cells of the largest bounds up to this
# many postings (at least k): enough for a k-th score that rules most chunks out.
_FIRST_PASS_POSTINGS = 2000
# Chunks a pass after the first adds cells for, at most (a cell whose bound must fall is
# taken whole, so a pass may score more); after _MAX_PASSES the best found are returned.
_MAX_CANDIDATES = 20_000
_MAX_PASSES = 6  # round trips of a keyword search at most (after the statistics)
K1, B = BM25Index().k1, BM25Index().b

# PostgreSQL-only tables, outside the SQLAlchemy models (their types need the extension).
TABLES = frozenset({
    "knowledge_chunk_search", "knowledge_chunk_cells", "knowledge_term_stats", "knowledge_term_cells",
    "knowledge_search_stats",
})

# Statistics of the rows a statement added (+1) or removed (-1), per base; in base order
# (and each base under its advisory lock) so two transactions never wait on each other.
_COUNT_FUNCTION = """CREATE OR REPLACE FUNCTION openbailian_search_count() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sign integer := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('openbailian-search:' || base_id))
        FROM (SELECT DISTINCT base_id FROM changed ORDER BY base_id) bases;
    INSERT INTO knowledge_term_stats AS t (base_id, term, df)
        SELECT c.base_id, e.lexeme, sign * count(*) FROM changed c, unnest(c.tsv) e
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (base_id, term) DO UPDATE SET df = t.df + EXCLUDED.df;
    IF to_regclass('knowledge_chunk_cells') IS NOT NULL THEN  -- 0023: the rows' cells, beside them
        IF sign > 0 THEN
            INSERT INTO knowledge_chunk_cells AS x (chunk_id, cells)
                SELECT chunk_id, openbailian_search_cells(base_id, tsv, length) FROM changed
                ON CONFLICT (chunk_id) DO UPDATE SET cells = EXCLUDED.cells;
        ELSE
            DELETE FROM knowledge_chunk_cells x USING changed c WHERE x.chunk_id = c.chunk_id;
        END IF;
    END IF;
    IF to_regclass('knowledge_term_cells') IS NOT NULL THEN  -- 0023
        INSERT INTO knowledge_term_cells AS t (base_id, term, tf_class, length_class, df)
            SELECT c.base_id, e.lexeme, openbailian_tf_class(cardinality(e.positions)),
                openbailian_length_class(c.length), sign * count(*)
            FROM changed c, unnest(c.tsv) e WHERE octet_length(e.lexeme) <= 2000
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (base_id, term, tf_class, length_class) DO UPDATE SET df = t.df + EXCLUDED.df;
        IF sign < 0 THEN
            DELETE FROM knowledge_term_cells t
                USING (SELECT DISTINCT c.base_id, e.lexeme FROM changed c, unnest(c.tsv) e) gone
                WHERE t.base_id = gone.base_id AND t.term = gone.lexeme AND t.df <= 0;
        END IF;
    END IF;
    INSERT INTO knowledge_search_stats AS s (base_id, chunks, total_length)
        SELECT base_id, sign * count(*), sign * coalesce(sum(length), 0) FROM changed
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (base_id) DO UPDATE
        SET chunks = s.chunks + EXCLUDED.chunks, total_length = s.total_length + EXCLUDED.total_length;
    IF sign < 0 THEN
        DELETE FROM knowledge_term_stats t
            USING (SELECT DISTINCT c.base_id, e.lexeme FROM changed c, unnest(c.tsv) e) gone
            WHERE t.base_id = gone.base_id AND t.term = gone.lexeme AND t.df <= 0;
        DELETE FROM knowledge_search_stats s WHERE s.chunks <= 0 AND s.base_id IN (SELECT base_id FROM changed);
    END IF;
    RETURN NULL;
END $$"""

# Deleted chunks take their search rows with them, one statement per deleting statement
# (a foreign-key cascade would run one per chunk, and the statistics trigger with it).
_UNCHUNK_FUNCTION = """CREATE OR REPLACE FUNCTION openbailian_search_unchunk() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('knowledge_chunk_search') IS NOT NULL THEN
        DELETE FROM knowledge_chunk_search s USING gone WHERE s.chunk_id = gone.id;
    END IF;
    RETURN NULL;
END $$"""

# A chunk's cell of a term: its tf class (tf itself up to 16, then four classes per
# doubling) and its length class (four per doubling of the length). BM25's term weight
# grows with tf and shrinks with the length, so the largest weight a cell can hold is
# known from the two classes alone, whatever the base's average length (``cell_bound``).
_CLASS_FUNCTIONS = [
    """CREATE OR REPLACE FUNCTION openbailian_tf_class(tf integer) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT (CASE WHEN coalesce(tf, 1) <= 16 THEN coalesce(tf, 1) ELSE 16 + floor(4 * ln(tf / 16.0) / ln(2)) END)::smallint $$""",
    """CREATE OR REPLACE FUNCTION openbailian_length_class(length integer) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT (CASE WHEN length <= 1 THEN 0 ELSE floor(4 * ln(length::float8) / ln(2)) END)::smallint $$""",
    # One lexeme per (term, chunk): 'base term tf-class length-class' (terms hold no spaces),
    # so the GIN index over them finds a base's chunks of a term by cell, or all ('base term ':*).
    """CREATE OR REPLACE FUNCTION openbailian_search_cells(base_id text, tsv tsvector, length integer) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT coalesce(array_to_tsvector(array_agg(base_id || ' ' || e.lexeme || ' ' ||
        openbailian_tf_class(cardinality(e.positions)) || ' ' || openbailian_length_class(length))), ''::tsvector)
    FROM unnest(tsv) e WHERE octet_length(e.lexeme) <= 2000 $$""",
]

_CELLS_INDEX = "knowledge_chunk_cells_gin"

SCHEMA = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    """CREATE TABLE IF NOT EXISTS knowledge_chunk_search (
        chunk_id integer PRIMARY KEY,
        base_id varchar(32) NOT NULL,
        document_id varchar(32) NOT NULL,
        dim integer NOT NULL,
        embedding vector,
        tsv tsvector NOT NULL,
        length integer NOT NULL DEFAULT 0
    )""",
    # Tables made by 0015: the length came with 0017, the foreign key went (the trigger below).
    "ALTER TABLE knowledge_chunk_search ADD COLUMN IF NOT EXISTS length integer NOT NULL DEFAULT 0",
    "ALTER TABLE knowledge_chunk_search DROP CONSTRAINT IF EXISTS knowledge_chunk_search_chunk_id_fkey",
    "DROP TABLE IF EXISTS knowledge_search_sync",
    "CREATE INDEX IF NOT EXISTS knowledge_chunk_search_doc ON knowledge_chunk_search (base_id, document_id)",
    # No GIN index over tsv (0015-0017 had one; 0024 drops it): every keyword pass finds its
    # chunks by their cells, and a row's tsv is read only once found.
    *_CLASS_FUNCTIONS,
    # 0023: the cells of every row, in a table of their own (one row per chunk, written by the
    # statistics trigger from the row's terms, whoever writes it), so that adding them never
    # rewrote the search table and its HNSW indexes.
    """CREATE TABLE IF NOT EXISTS knowledge_chunk_cells (
        chunk_id integer PRIMARY KEY,
        cells tsvector NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {_CELLS_INDEX} ON knowledge_chunk_cells USING gin (cells)",
    """CREATE TABLE IF NOT EXISTS knowledge_term_stats (
        base_id varchar(32) NOT NULL,
        term text NOT NULL,
        df integer NOT NULL,
        PRIMARY KEY (base_id, term)
    )""",
    """CREATE TABLE IF NOT EXISTS knowledge_term_cells (
        base_id varchar(32) NOT NULL,
        term text NOT NULL,
        tf_class smallint NOT NULL,
        length_class smallint NOT NULL,
        df integer NOT NULL,
        PRIMARY KEY (base_id, term, tf_class, length_class)
    )""",
    # Whoever empties the term statistics empties their cells too (bench/search.py's loader does).
    """CREATE OR REPLACE FUNCTION openbailian_search_uncount() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN TRUNCATE knowledge_term_cells; RETURN NULL; END $$""",
    "DROP TRIGGER IF EXISTS knowledge_term_stats_emptied ON knowledge_term_stats",
    "CREATE TRIGGER knowledge_term_stats_emptied AFTER TRUNCATE ON knowledge_term_stats "
    "FOR EACH STATEMENT EXECUTE FUNCTION openbailian_search_uncount()",
    """CREATE TABLE IF NOT EXISTS knowledge_search_stats (
        base_id varchar(32) PRIMARY KEY,
        chunks bigint NOT NULL,
        total_length bigint NOT NULL
    )""",
    _COUNT_FUNCTION,
    _UNCHUNK_FUNCTION,
    "DROP TRIGGER IF EXISTS knowledge_chunk_search_added ON knowledge_chunk_search",
    "CREATE TRIGGER knowledge_chunk_search_added AFTER INSERT ON knowledge_chunk_search "
    "REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION openbailian_search_count()",
    "DROP TRIGGER IF EXISTS knowledge_chunk_search_removed ON knowledge_chunk_search",
    "CREATE TRIGGER knowledge_chunk_search_removed AFTER DELETE ON knowledge_chunk_search "
    "REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION openbailian_search_count()",
    # Whoever empties the search rows empties their cells too (rebuild, bench/search.py's loader;
    # unless the same TRUNCATE named them, which PostgreSQL would refuse to truncate again).
    """CREATE OR REPLACE FUNCTION openbailian_search_uncells() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM knowledge_chunk_cells) THEN TRUNCATE knowledge_chunk_cells; END IF;
        RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS knowledge_chunk_search_emptied ON knowledge_chunk_search",
    "CREATE TRIGGER knowledge_chunk_search_emptied AFTER TRUNCATE ON knowledge_chunk_search "
    "FOR EACH STATEMENT EXECUTE FUNCTION openbailian_search_uncells()",
    "DROP TRIGGER IF EXISTS knowledge_chunks_unsearch ON knowledge_chunks",
    "CREATE TRIGGER knowledge_chunks_unsearch AFTER DELETE ON knowledge_chunks "
    "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION openbailian_search_unchunk()",
]

# The cells' counts of every base from its rows.
_COUNT_CELLS = (
    "INSERT INTO knowledge_term_cells (base_id, term, tf_class, length_class, df) "
    "SELECT s.base_id, e.lexeme, openbailian_tf_class(cardinality(e.positions)), openbailian_length_class(s.length), count(*) "
    "FROM knowledge_chunk_search s, unnest(s.tsv) e WHERE octet_length(e.lexeme) <= 2000 GROUP BY 1, 2, 3, 4"
)
# The statistics of every base from its rows (after a TRUNCATE, which fires no trigger; the
# term statistics' truncation empties the cells' counts).
_RECOUNT = [
    "TRUNCATE knowledge_term_stats, knowledge_search_stats",
    "INSERT INTO knowledge_term_stats (base_id, term, df) "
    "SELECT s.base_id, e.lexeme, count(*) FROM knowledge_chunk_search s, unnest(s.tsv) e GROUP BY 1, 2",
    _COUNT_CELLS,
    "INSERT INTO knowledge_search_stats (base_id, chunks, total_length) "
    "SELECT base_id, count(*), coalesce(sum(length), 0) FROM knowledge_chunk_search GROUP BY 1",
]


class SearchUnavailable(RuntimeError):
    """``OPENBAILIAN_KNOWLEDGE_SEARCH=pgvector`` on a database that cannot serve it."""


def _quote(term: str) -> str:
    return term.replace("\\", "\\\\").replace("'", "''")


def _lexemes(terms: Iterable[str]) -> list[str]:
    return [t for t in terms if t and len(t.encode()) <= _MAX_LEXEME_BYTES]


def tsvector_literal(terms: str) -> str:
    """The chunk's space-separated terms as a tsvector literal: each lexeme with positions
    1..tf (its term frequency, up to 256), in order of first appearance."""
    counts = Counter(_lexemes(terms.split()))
    return " ".join(
        f"'{_quote(t)}':" + ",".join(str(p) for p in range(1, min(tf, _MAX_POSITIONS) + 1))
        for t, tf in counts.items()
    )


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
    words = (terms or "").split()
    return (chunk_id, base_id, document_id, len(vector) if vector else 0, vector, tsvector_literal(terms or ""), len(words))


# Rows are copied (binary) into a transaction's staging table, then cast into place.
_STAGE = (
    "CREATE TEMP TABLE knowledge_search_stage (chunk_id integer, base_id text, document_id text, "
    "dim integer, embedding real[], tsv text, length integer) ON COMMIT DROP"
)
_COPY = "COPY knowledge_search_stage FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["int4", "text", "text", "int4", "float4[]", "text", "int4"]
_FROM_STAGE = (
    "INSERT INTO knowledge_chunk_search (chunk_id, base_id, document_id, dim, embedding, tsv, length) "
    "SELECT chunk_id, base_id, document_id, dim, embedding::vector, tsv::tsvector, length FROM knowledge_search_stage "
    "ON CONFLICT (chunk_id) DO NOTHING"
)


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


# What :func:`tsvector_literal` makes of a chunk's stored terms (each lexeme quoted, with
# positions 1..tf up to 256; over-long terms left out), and the row's length, made by the
# server (chr(39) is the quote, chr(92) the backslash: both escaped as _quote does).
TSV_OF_TERMS = (
    "coalesce((SELECT string_agg(chr(39) || replace(replace(t, chr(92), chr(92) || chr(92)), chr(39), chr(39) || chr(39)) "
    "|| chr(39) || ':' || array_to_string(ARRAY(SELECT generate_series(1, least(tf, 256))), ','), ' ') "
    "FROM (SELECT t, count(*) AS tf FROM unnest(string_to_array(c.terms, ' ')) AS u(t) "
    f"WHERE t <> '' AND octet_length(t) <= {_MAX_LEXEME_BYTES} GROUP BY t) g), '')::tsvector"
)
LENGTH_OF_TERMS = "cardinality(array_remove(string_to_array(c.terms, ' '), ''))"

# The vectors of the chunks to write, copied in binary (pgvector's own wire format, made by
# numpy), so that only the bytes of each embedding pass through Python.
_VECTORS_STAGE = "CREATE TEMP TABLE knowledge_search_vectors (chunk_id integer, embedding vector) ON COMMIT DROP"
_VECTORS_COPY = "COPY knowledge_search_vectors FROM STDIN (FORMAT BINARY)"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_CHUNKS_OF = (
    "SELECT c.id, c.embedding FROM knowledge_chunks c WHERE c.embedding IS NOT NULL AND c.id > :after{missing} "
    "ORDER BY c.id LIMIT :limit"
)
_ONLY_MISSING = " AND NOT EXISTS (SELECT 1 FROM knowledge_chunk_search s WHERE s.chunk_id = c.id)"
_ROWS_FROM_CHUNKS = (
    "INSERT INTO knowledge_chunk_search (chunk_id, base_id, document_id, dim, embedding, tsv, length) "
    "SELECT c.id, c.base_id, c.document_id, coalesce(vector_dims(v.embedding), 0), v.embedding, "
    f"{TSV_OF_TERMS}, {LENGTH_OF_TERMS} "
    "FROM knowledge_chunks c LEFT JOIN knowledge_search_vectors v ON v.chunk_id = c.id WHERE true{missing} "
    "ON CONFLICT (chunk_id) DO NOTHING"
)
_COPY_BATCH = 20_000


def _binary_vector_rows(rows: Sequence[Any]) -> bytes:
    """Binary COPY rows (chunk id, vector) of float32 embeddings, built by numpy per dimension."""
    by_size: dict[int, list[tuple[int, bytes]]] = {}
    for chunk_id, embedding in rows:
        if embedding and len(embedding) % 4 == 0:
            by_size.setdefault(len(embedding), []).append((int(chunk_id), bytes(embedding)))
    blocks = []
    for size, group in by_size.items():
        dim = size // 4
        layout = np.dtype([
            ("fields", ">i2"), ("id_length", ">i4"), ("id", ">i4"), ("vector_length", ">i4"),
            ("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (dim,)),
        ])
        block = np.zeros(len(group), dtype=layout)
        block["fields"], block["id_length"], block["vector_length"], block["dim"] = 2, 4, 4 + size, dim
        block["id"] = [chunk_id for chunk_id, _ in group]
        block["values"] = np.frombuffer(b"".join(e for _, e in group), dtype="<f4").reshape(len(group), dim)
        blocks.append(block.tobytes())
    return b"".join(blocks)


def _write_rows(connection: Connection, *, only_missing: bool) -> None:
    """The search rows of every chunk (or of those without one), written by the server from
    the stored chunks: tsvector and length in SQL, the vectors by binary COPY (the statistics
    follow by trigger)."""
    missing = _ONLY_MISSING if only_missing else ""
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]  # driver_connection is Optional; a checked-out one is psycopg's
        cursor.execute(_VECTORS_STAGE)
        after = 0
        while rows := connection.execute(
            text(_CHUNKS_OF.format(missing=missing)), {"after": after, "limit": _COPY_BATCH}
        ).all():
            with cursor.copy(_VECTORS_COPY) as copy:  # one per batch: no query runs during a COPY
                copy.write(_COPY_HEADER + _binary_vector_rows(rows) + _COPY_TRAILER)
            after = rows[-1][0]
        cursor.execute(_ROWS_FROM_CHUNKS.format(missing=missing))
        cursor.execute("DROP TABLE knowledge_search_vectors")


def _rows_per_base(connection: Connection) -> dict[str, int]:
    """Search rows of every base (0 for a base without any)."""
    rows = connection.execute(
        text(
            "SELECT b.id, count(s.chunk_id) FROM knowledge_bases b "
            "LEFT JOIN knowledge_chunk_search s ON s.base_id = b.id GROUP BY b.id ORDER BY b.id"
        )
    )
    return {str(base_id): int(count) for base_id, count in rows}


def pgvector_version(connection: Connection) -> str | None:
    """The installed pgvector extension's version in this database, or None."""
    return connection.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()


def ensure_schema(connection: Connection) -> None:
    """Extension, tables, triggers and the keyword index (idempotent; raises when the
    extension is missing). Brings a ``0015`` schema up to date too."""
    for statement in SCHEMA:
        connection.execute(text(statement))


def _index_name(dim: int) -> str:
    return f"knowledge_chunk_search_hnsw_{int(dim)}"


def ensure_dim_index(connection: Connection, dim: int) -> None:
    """The partial HNSW index of the vectors of this dimension (idempotent)."""
    dim = int(dim)
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"{_LOCK_PREFIX}index"})
    connection.execute(text(_index_sql(dim, concurrently=False)))


def _index_sql(dim: int, *, concurrently: bool) -> str:
    dim = int(dim)
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {_index_name(dim)} ON knowledge_chunk_search "
        f"USING hnsw ((embedding::vector({dim})) vector_ip_ops) WITH (m = 16, ef_construction = 128) "
        f"WHERE dim = {dim}"
    )


# A search's settings in one statement: the HNSW walk, and how long it may wait for a table
# lock (only a rebuild or a migration takes the locks that block reads) before SearchBusy.
# Custom plans only: a generic plan of the keyword passes cannot see the tsquery (a parameter)
# and may read a document filter's btree instead of the cells' GIN index, testing every row.
_SEARCH_SETTINGS = text(
    "SELECT set_config('hnsw.ef_search', :ef, true), set_config('hnsw.iterative_scan', 'strict_order', true), "
    "set_config('lock_timeout', :wait, true), set_config('plan_cache_mode', 'force_custom_plan', true)"
)
_SEARCH_SETTINGS_BEFORE_0_8 = text(
    "SELECT set_config('hnsw.ef_search', :ef, true), set_config('lock_timeout', :wait, true), "
    "set_config('plan_cache_mode', 'force_custom_plan', true)"
)
_LOCK_WAIT = "3s"
_LOCK_NOT_AVAILABLE = "55P03"


async def index_state(db: Database, dim: int) -> str:
    """"valid", "invalid" (a concurrent build in progress, or one that was stopped) or "missing"."""
    async with db.session() as session:
        valid = (await session.execute(
            text("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :name"),
            {"name": _index_name(dim)},
        )).scalar()
    return "missing" if valid is None else "valid" if valid else "invalid"


async def build_dim_index(db: Database, dim: int, *, wait: bool) -> bool:
    """Builds the HNSW index of this dimension without blocking reads or writes (``CREATE
    INDEX CONCURRENTLY``, outside a transaction, with at least 1GB of maintenance memory),
    one builder at a time (an advisory lock): with ``wait`` False, returns False at once
    when another holds it. An invalid index left by a stopped build is dropped first.
    True when this call built (or found) a valid index."""
    dim = int(dim)
    name = _index_name(dim)
    key = {"key": f"{_LOCK_PREFIX}index"}
    async with db.engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        if wait:
            await connection.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
        elif not (await connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:key))"), key)).scalar():
            return False
        try:
            if await index_state(db, dim) == "invalid":
                await connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
            await connection.execute(text(
                "SELECT set_config('maintenance_work_mem', '1GB', false) "
                "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('1GB')"
            ))
            logger.info("building the HNSW index of dimension %d (searches meanwhile scan exactly)", dim)
            await connection.execute(text(_index_sql(dim, concurrently=True)))
            return await index_state(db, dim) == "valid"
        finally:
            await connection.execute(text("RESET maintenance_work_mem"))
            await connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)


def _add_missing(connection: Connection) -> dict[str, int]:
    """Rows for every chunk that has none (the statistics follow by trigger); rows added per base."""
    before = _rows_per_base(connection)
    _write_rows(connection, only_missing=True)
    return {base: count - before.get(base, 0) for base, count in _rows_per_base(connection).items()}


# Index builds are much faster in memory (this transaction only): at least 1GB, never
# less than the server was given (a 1M-chunk 384-d graph needs ~3GB).
_BUILD_MEMORY = text(
    "SELECT set_config('maintenance_work_mem', '1GB', true) "
    "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('1GB')"
)


def rebuild(connection: Connection, dims: Iterable[int] = (), *, hnsw: bool = True) -> dict[str, int]:
    """Every base's rows anew from ``knowledge_chunks`` (migration ``0015``, ``openbailian
    search reindex``): the tables' indexes are dropped, the rows, cells and statistics refilled
    by the server, the keyword indexes made again, then an HNSW index for each dimension found
    and for ``dims``. Returns rows per base."""
    ensure_schema(connection)
    for name in connection.execute(
        text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunk_search' "
            "AND indexname <> 'knowledge_chunk_search_pkey'"
        )
    ).scalars():
        connection.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    connection.execute(text(f"DROP INDEX IF EXISTS {_CELLS_INDEX}"))
    connection.execute(text("TRUNCATE knowledge_chunk_search, knowledge_term_stats, knowledge_search_stats"))  # and the cells
    connection.execute(_BUILD_MEMORY)
    _write_rows(connection, only_missing=False)
    ensure_schema(connection)  # the keyword and document indexes, built once over all rows
    if hnsw:  # else the caller builds them after the commit, concurrently (`reindex`)
        for dim in _dims(connection, dims):
            ensure_dim_index(connection, dim)
    connection.execute(text("ANALYZE knowledge_chunk_search"))
    connection.execute(text("ANALYZE knowledge_chunk_cells"))
    return _rows_per_base(connection)


def _dims(connection: Connection, wanted: Iterable[int]) -> list[int]:
    """The vector dimensions in the rows, and ``wanted``."""
    found = connection.execute(text("SELECT DISTINCT dim FROM knowledge_chunk_search WHERE dim > 0")).scalars().all()
    return sorted({int(d) for d in found} | {int(d) for d in wanted})


def upgrade(connection: Connection) -> dict[str, int]:
    """Migration ``0017`` on a ``0015`` schema, keeping its vectors and HNSW indexes: the
    new columns, tables and triggers; each row's length from its term frequencies; the
    statistics counted; the rows of chunks stored since the last search (0015 added them
    lazily) copied in. Rows added per base."""
    ensure_schema(connection)
    connection.execute(
        text(
            "UPDATE knowledge_chunk_search s SET length = "
            "(SELECT coalesce(sum(cardinality(e.positions)), 0) FROM unnest(s.tsv) e) WHERE s.length = 0"
        )
    )
    fill_cells(connection)  # of the rows 0015 wrote, with their lengths now
    for statement in _RECOUNT:
        connection.execute(text(statement))
    added = _add_missing(connection)
    connection.execute(text("ANALYZE knowledge_chunk_search"))
    connection.execute(text("ANALYZE knowledge_chunk_cells"))
    return added


CELLS_OF_ROW = "openbailian_search_cells(s.base_id, s.tsv, s.length)"


def fill_cells(connection: Connection, cells: str = CELLS_OF_ROW) -> int:
    """The cells of every search row ``s`` without them, from ``cells`` (an expression of the
    row; by default computed from its terms, as the trigger does). Into an empty table the
    rows go first and the GIN index is built after (much faster than growing it). Rows added."""
    empty = not connection.execute(text("SELECT EXISTS (SELECT 1 FROM knowledge_chunk_cells)")).scalar()
    if empty:
        connection.execute(text(f"DROP INDEX IF EXISTS {_CELLS_INDEX}"))
    added = connection.execute(text(
        f"INSERT INTO knowledge_chunk_cells (chunk_id, cells) SELECT s.chunk_id, {cells} FROM knowledge_chunk_search s "
        "WHERE NOT EXISTS (SELECT 1 FROM knowledge_chunk_cells x WHERE x.chunk_id = s.chunk_id)"
    )).rowcount
    if empty:
        connection.execute(_BUILD_MEMORY)
        ensure_schema(connection)
    return int(added or 0)


def add_cells(connection: Connection) -> None:
    """Migration ``0023`` on a ``0017`` schema: the cells' tables (``knowledge_chunk_cells``,
    one row per chunk, under its GIN index; ``knowledge_term_cells``, their counts), filled from
    the search rows, and the trigger that keeps them. ``knowledge_chunk_search`` is only read:
    neither it nor its HNSW indexes are rewritten."""
    ensure_schema(connection)
    fill_cells(connection)
    connection.execute(text("TRUNCATE knowledge_term_cells"))
    connection.execute(text(_COUNT_CELLS))
    connection.execute(text("ANALYZE knowledge_chunk_cells"))


async def reindex(db: Database, dim: int) -> dict[str, int]:
    """Rebuild the PostgreSQL search rows of every base (``openbailian search reindex``): creates
    the extension and tables when missing, so a database migrated before pgvector was installed
    gets PostgreSQL search from here on. The rows are rewritten in one transaction (searches
    meanwhile answer ``SearchBusy`` after ``_LOCK_WAIT``), then the HNSW indexes are built
    concurrently (searches meanwhile scan exactly). Rows per base."""
    if db.engine.dialect.name != "postgresql":
        raise SearchUnavailable("reindex rebuilds PostgreSQL search; on SQLite the index is in process, rebuilt by each process")
    counts, dims = await asyncio.to_thread(_reindex_sync, db.url, dim)
    for each in dims:  # after the rows' commit: searches go on meanwhile (an exact scan) and so does ingestion
        await build_dim_index(db, each, wait=True)
    return counts


def _reindex_sync(url: str, dim: int) -> tuple[dict[str, int], list[int]]:
    # A synchronous connection: the rows go in by COPY, as in migration 0015.
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            available = connection.execute(
                text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            ).scalar()
            if not available:
                raise SearchUnavailable("the pgvector extension is not installed on this PostgreSQL server")
            return rebuild(connection, [dim], hnsw=False), _dims(connection, [dim])
    finally:
        engine.dispose()


class SearchRows:
    """Writes the search rows of chunks as they are stored, in the storing transaction: on
    PostgreSQL once the search tables exist (whichever index this process searches with),
    elsewhere nothing. Idempotent (a chunk's row is written once)."""

    def __init__(self, db: Database) -> None:
        self._postgres = db.engine.dialect.name == "postgresql"

    async def write(self, session: AsyncSession, rows: Sequence[ChunkRow]) -> None:
        """``rows``: (chunk id, base id, document id, terms, embedding) of flushed chunks."""
        if not self._postgres or not rows:
            return
        connection = await session.connection()
        if (await connection.execute(text("SELECT to_regclass('knowledge_chunk_search')"))).scalar() is None:
            return  # no pgvector here: the in-process index serves (reindex makes the tables)
        await _copy_rows_async(connection, rows)


@dataclass(frozen=True, slots=True)
class Cell:
    """A base's chunks holding a term with the same tf class and length class: how many,
    and the most BM25 weight the term can give one of them (``cell_bound``)."""

    term: str
    tf_class: int
    length_class: int
    df: int
    bound: float


@dataclass(frozen=True, slots=True)
class KeywordTerm:
    """A query term present in the base: its document frequency, BM25 idf and cells (the
    largest bound first)."""

    term: str
    df: int
    idf: float
    cells: tuple[Cell, ...] = ()


def _largest_tf(tf_class: int) -> float:
    """The largest tf of a class (``openbailian_tf_class``: tf up to 16, then 4 per doubling)."""
    return float(tf_class) if tf_class <= 16 else 16.0 * math.pow(2.0, (tf_class - 15) / 4)


def _shortest_length(length_class: int) -> float:
    """The shortest length of a class (``openbailian_length_class``: 4 per doubling), a hair
    under it so that the server's rounding at a power of two can only loosen the bound."""
    return max(1.0, math.pow(2.0, length_class / 4) * (1 - 1e-9))


def term_weight(idf: float, tf: float, length: float, avgdl: float) -> float:
    """BM25's weight of one term in a chunk (as ``BM25Index``)."""
    return float(idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avgdl)))


def cell_bound(idf: float, tf_class: int, length_class: int, avgdl: float) -> float:
    """The most weight a chunk of this cell gets: the weight grows with tf and shrinks with
    the length, so the class's largest tf at its shortest length."""
    return term_weight(idf, _largest_tf(tf_class), _shortest_length(length_class), avgdl)


def keyword_terms(cells: Iterable[tuple[str, int, int, int]], chunks: int, avgdl: float) -> list[KeywordTerm]:
    """The query's terms found in the base from their cells (term, tf class, length class,
    chunks), rarest first, with BM25Index's idf and the cells' bounds."""
    by_term: dict[str, list[tuple[int, int, int]]] = {}
    for term, tf_class, length_class, df in cells:
        if df > 0:
            by_term.setdefault(term, []).append((tf_class, length_class, df))
    found = []
    for term, rows in by_term.items():
        df = sum(row[2] for row in rows)
        idf = math.log(1 + (chunks - df + 0.5) / (df + 0.5))
        ranked = sorted(
            (Cell(term, c, length, n, cell_bound(idf, c, length, avgdl)) for c, length, n in rows),
            key=lambda cell: (-cell.bound, cell.df, cell.tf_class, cell.length_class),
        )
        found.append(KeywordTerm(term, df, idf, tuple(ranked)))
    return sorted(found, key=lambda t: (t.df, t.term))


class CellPlan:
    """Which cells of the query's terms have been scored (a prefix of each term's, largest
    bound first), and so how much a chunk not scored yet can score at most."""

    def __init__(self, terms: list[KeywordTerm]) -> None:
        self.terms = terms
        self.taken = [0] * len(terms)

    def unseen_bound(self) -> float:
        """The most a chunk holding none of the scored cells can score."""
        return sum(t.cells[i].bound for t, i in zip(self.terms, self.taken, strict=True) if i < len(t.cells))

    def first(self, postings: int, k: int) -> list[Cell]:
        """The cells of the largest bounds until they hold ``postings`` chunks (more when
        that is fewer than ``k``, which would leave no k-th score to prune by)."""
        ranked = sorted(
            ((cell.bound, n, j) for n, t in enumerate(self.terms) for j, cell in enumerate(t.cells)),
            key=lambda entry: -entry[0],
        )
        held = 0
        for _, n, j in ranked:
            if held >= k and held + self.terms[n].cells[j].df > postings:
                break
            held += self.terms[n].cells[j].df
            self.taken[n] = max(self.taken[n], j + 1)  # bounds fall within a term: a prefix
        return self._newly_taken([0] * len(self.terms))

    def more(self, threshold: float, postings: int) -> list[Cell]:
        """Cells until a chunk holding none of them cannot beat ``threshold`` (a k-th best
        score found), or until they hold ``postings`` chunks: each time the next cell of the
        term whose bound it lowers most per chunk it holds (MaxScore over the cells)."""
        before = list(self.taken)
        held = 0
        while self.unseen_bound() >= threshold and held < postings:
            best, gain = -1, -1.0
            for n, (t, i) in enumerate(zip(self.terms, self.taken, strict=True)):
                if i < len(t.cells):
                    after = t.cells[i + 1].bound if i + 1 < len(t.cells) else 0.0
                    if (ratio := (t.cells[i].bound - after) / max(t.cells[i].df, 1)) > gain:
                        best, gain = n, ratio
            if best < 0:
                break
            held += self.terms[best].cells[self.taken[best]].df
            self.taken[best] += 1
        return self._newly_taken(before)

    def _newly_taken(self, before: list[int]) -> list[Cell]:
        return [cell for t, b, i in zip(self.terms, before, self.taken, strict=True) for cell in t.cells[b:i]]

    def taken_before(self, cells: list[Cell]) -> list[Cell]:
        """The cells scored before these (taken last)."""
        new = {(c.term, c.tf_class, c.length_class) for c in cells}
        return [
            cell for t, i in zip(self.terms, self.taken, strict=True) for cell in t.cells[:i]
            if (cell.term, cell.tf_class, cell.length_class) not in new
        ]


def cells_query(base_id: str, cells: Sequence[Cell], terms: Sequence[KeywordTerm]) -> str:
    """A tsquery of the chunks holding any of these cells (``openbailian_search_cells``'
    lexemes); a term whose every cell is among them by its prefix, one key for them all."""
    chosen: dict[str, list[Cell]] = {}
    for cell in cells:
        chosen.setdefault(cell.term, []).append(cell)
    whole = {t.term for t in terms if len(chosen.get(t.term, ())) == len(t.cells)}
    keys = [f"'{_quote(f'{base_id} {term} ')}':*" for term in sorted(whole)]
    keys += [
        f"'{_quote(f'{base_id} {c.term} {c.tf_class} {c.length_class}')}'"
        for term, group in sorted(chosen.items()) if term not in whole for c in group
    ]
    return " | ".join(keys)


_MAX_QUERY_KEYS = 300  # cells named in a threshold query at most: PostgreSQL tests it on every candidate


def threshold_query(base_id: str, terms: Sequence[KeywordTerm], threshold: float) -> str | None:
    """A tsquery of the chunks whose cells' bounds add up to ``threshold`` or more (WAND
    pushed into the GIN index: a chunk holding a common term's cell must hold enough of the
    other terms too). When that names more than ``_MAX_QUERY_KEYS`` cells the terms of the
    smallest bounds are left out of it, their largest bounds taken off the threshold (more
    candidates, never fewer than needed); None when even that cannot be small."""
    ordered = sorted(terms, key=lambda t: -t.cells[0].bound)
    for used in range(len(ordered), 0, -1):
        left_out = sum(t.cells[0].bound for t in ordered[used:])
        if threshold - left_out <= threshold * 1e-9:
            return None  # the terms left out alone could reach it
        try:
            found = _threshold_query(base_id, ordered[:used], threshold - left_out)
        except OverflowError:
            continue
        return found if isinstance(found, str) else None
    return None


def _threshold_query(base_id: str, ordered: Sequence[KeywordTerm], threshold: float) -> str | bool:
    rest = [sum(t.cells[0].bound for t in ordered[i:]) for i in range(len(ordered) + 1)]
    slack = threshold * 1e-9  # float sums in another order: never drop a chunk at the threshold
    keys = calls = 0

    def needed(i: int, need: float) -> str | bool:
        nonlocal keys, calls
        calls += 1
        if calls > 10 * _MAX_QUERY_KEYS:
            raise OverflowError
        if need <= slack:
            return True
        if i == len(ordered) or rest[i] < need - slack:
            return False
        groups: dict[str | bool, list[Cell]] = {}
        for cell in ordered[i].cells:
            sub = needed(i + 1, need - cell.bound)
            if sub is False:
                break  # the cells' bounds only fall from here
            groups.setdefault(sub, []).append(cell)
        parts = []
        for sub, cells in groups.items():
            keys += len(cells)
            if keys > _MAX_QUERY_KEYS:
                raise OverflowError
            held = " | ".join(f"'{_quote(f'{base_id} {c.term} {c.tf_class} {c.length_class}')}'" for c in cells)
            parts.append(f"({held})" if sub is True else f"({held}) & ({sub})")
        without = needed(i + 1, need)
        if without is True:
            return True
        if without is not False:
            parts.append(f"({without})")
        return " | ".join(parts) if parts else False

    return needed(0, threshold)


# The base's totals and the cells of each query term it holds, in one trip.
_STATISTICS = text(
    "SELECT b.chunks, b.total_length, t.term, t.tf_class, t.length_class, t.df FROM knowledge_search_stats b "
    "LEFT JOIN knowledge_term_cells t ON t.base_id = b.base_id AND t.term = ANY(:terms) AND t.df > 0 "
    "WHERE b.base_id = :base_id"
)


class PgSearch:
    """Dense and keyword candidates computed by PostgreSQL (see the module's docstring)."""

    name = "pgvector"

    def __init__(self, db: Database, dim: int, *, ef_search: int = 200, iterative_scan: bool = True) -> None:
        self._db = db
        self._dim = int(dim)
        self._ef_search = ef_search
        self._iterative_scan = iterative_scan  # pgvector >= 0.8: filtered searches keep walking
        self._build: asyncio.Task[bool] | None = None

    async def prepare(self) -> None:
        """Starts building the HNSW index of this dimension when there is none, in the
        background and without blocking writes (``CREATE INDEX CONCURRENTLY``); never waits
        for a build, this process's or another's: until the index is valid the planner
        answers the dense side by an exact scan."""
        if await index_state(self._db, self._dim) == "valid":
            return
        if self._build is None or self._build.done():
            self._build = asyncio.create_task(self._build_index(), name=f"hnsw-index-{self._dim}")

    async def index_built(self) -> bool:
        """Waits for the build this process started, if any; True when it built the index."""
        return await self._build if self._build is not None else False

    async def _build_index(self) -> bool:
        try:
            return await build_dim_index(self._db, self._dim, wait=False)
        except Exception:  # noqa: BLE001 - logged; searches go on by exact scan, the next start retries
            logger.exception("building the HNSW index of dimension %d failed", self._dim)
            return False

    def forget(self, base_id: str) -> None:
        """Nothing is held per base (the rows go with the chunks)."""

    async def aclose(self) -> None:
        if self._build is not None and not self._build.done():
            self._build.cancel()  # the server cancels the statement; the invalid index is dropped by the next build
            await asyncio.gather(self._build, return_exceptions=True)

    async def search(
        self,
        base_id: str,
        version: int,
        mask: ChunkMask,
        query_vector: QueryVector,
        query_terms: list[str],
        k: int,
    ) -> BaseHits:
        where, params = filters(base_id, mask)
        vector = ready_vector(query_vector)
        try:
            if vector is None:  # the model is still at work: the keyword half meanwhile, in a transaction of its own
                async with self._searching(k) as connection:
                    keyword = await self._keyword(connection, where, params, query_terms, k)
                vector = await vector_of(query_vector)
                async with self._searching(k) as connection:
                    dense = await self._dense(connection, where, params, vector, k)
            else:
                async with self._searching(k) as connection:
                    dense = await self._dense(connection, where, params, vector, k)
                    keyword = await self._keyword(connection, where, params, query_terms, k)
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise SearchBusy(
                    "knowledge search waited more than " + _LOCK_WAIT + " for its tables, held by a rebuild "
                    "(`openbailian search reindex` or a migration): retry when it has finished"
                ) from error
            raise
        return BaseHits(dense=dense, keyword=keyword)

    @asynccontextmanager
    async def _searching(self, k: int) -> AsyncIterator[AsyncConnection]:
        """A transaction with the search's settings (for ``k`` results) in force."""
        async with self._db.begin() as connection:
            await connection.execute(
                _SEARCH_SETTINGS if self._iterative_scan else _SEARCH_SETTINGS_BEFORE_0_8,
                {"ef": str(max(int(k), self._ef_search)), "wait": _LOCK_WAIT},
            )
            yield connection

    async def _dense(
        self, connection: AsyncConnection, where: str, params: dict[str, Any], query_vector: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        """The best ``k`` chunks by inner product (the HNSW index's search)."""
        vector = np.asarray(query_vector, dtype=np.float32)
        if len(vector) != self._dim:
            return []
        rows = await connection.execute(text(dense_sql(self._dim, where)), {**params, "q": vector_literal(vector), "k": k})
        return [(int(chunk), -float(distance)) for chunk, distance in rows]  # <#> is -inner product

    async def _keyword(
        self, connection: AsyncConnection, where: str, params: dict[str, Any], query_terms: list[str], k: int
    ) -> list[int]:
        """The best ``k`` chunks by BM25 (exact; see the module's docstring for how few it scores)."""
        wanted = sorted(set(_lexemes(query_terms)))
        if not wanted:
            return []
        base_id = params["base_id"]
        found = (await connection.execute(_STATISTICS, {"base_id": base_id, "terms": wanted})).all()
        chunks, total_length = (int(found[0].chunks), int(found[0].total_length)) if found else (0, 0)
        if chunks <= 0:
            return []
        avgdl = (total_length / chunks) or 1.0
        terms = keyword_terms(
            ((str(r.term), int(r.tf_class), int(r.length_class), int(r.df)) for r in found if r.term is not None),
            chunks, avgdl,
        )
        if not terms:
            return []
        scoring = {
            **params, "k": k, "terms": [t.term for t in terms], "idfs": [t.idf for t in terms],
            "k1": K1, "b": B, "avgdl": avgdl,
        }
        plan = CellPlan(terms)
        cells = plan.first(_FIRST_PASS_POSTINGS, min(k, _FIRST_PASS_POSTINGS))
        hits: dict[int, float] = {}
        hits.update(await self._score(connection, where, scoring, base_id, plan, cells))
        threshold = _kth_score(hits, k)
        if not (plan.unseen_bound() == 0 or threshold > plan.unseen_bound()):
            wand = threshold_query(base_id, terms, threshold)
            if wand is not None:  # the second pass scores every chunk that can still reach the top k
                hits.update(await self._score(connection, where, scoring, base_id, plan, plan.taken_before([]), wand))
            else:
                for passes in range(1, _MAX_PASSES):
                    cells = plan.more(threshold, _MAX_CANDIDATES)
                    hits.update(await self._score(connection, where, scoring, base_id, plan, cells))
                    threshold = _kth_score(hits, k)
                    if plan.unseen_bound() == 0 or threshold > plan.unseen_bound():
                        break
        return [chunk for chunk, _ in sorted(hits.items(), key=lambda pair: (-pair[1], pair[0]))[:k]]

    @staticmethod
    async def _score(
        connection: AsyncConnection, where: str, scoring: dict[str, Any], base_id: str,
        plan: CellPlan, cells: list[Cell], query: str | None = None,
    ) -> list[tuple[int, float]]:
        """The best ``k`` of the chunks holding these cells (or matching ``query``, then
        ``cells`` are those scored before) and none scored before."""
        if query is None:
            if not cells:
                return []
            before, query = plan.taken_before(cells), cells_query(base_id, cells, plan.terms)
        else:
            before = cells
        rows = await connection.execute(
            text(keyword_sql(where, exclude=bool(before))),
            {**scoring, "tq": query, "done": cells_query(base_id, before, plan.terms)},
        )
        return [(int(chunk), float(score)) for chunk, score in rows]

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


def keyword_sql(where: str, *, exclude: bool = False) -> str:
    """BM25 of the chunks holding any cell of ``:tq`` (and, with ``exclude``, none of
    ``:done``), found by the cells' GIN index, scored on every query term (``:terms`` with
    their ``:idfs``; tf is a lexeme's positions); the best ``:k``."""
    unscored = " AND NOT x.cells @@ CAST(:done AS tsquery)" if exclude else ""
    return (
        "WITH c AS MATERIALIZED (SELECT s.chunk_id, s.length, s.tsv FROM knowledge_chunk_cells x "
        "JOIN knowledge_chunk_search s ON s.chunk_id = x.chunk_id "
        f"WHERE x.cells @@ CAST(:tq AS tsquery){unscored} AND {where}) "
        "SELECT c.chunk_id, sum(q.idf * e.tf * (:k1 + 1) / (e.tf + :k1 * (1 - :b + :b * c.length / :avgdl))) AS score "
        "FROM c CROSS JOIN LATERAL (SELECT u.lexeme, cardinality(u.positions) AS tf "
        # Only the query's lexemes (marked A, the rest filtered out): 4x cheaper than them all.
        "FROM unnest(ts_filter(setweight(c.tsv, 'A', CAST(:terms AS text[])), '{a}')) u) e "
        "JOIN unnest(CAST(:terms AS text[]), CAST(:idfs AS float8[])) AS q(term, idf) ON q.term = e.lexeme "
        "GROUP BY c.chunk_id ORDER BY score DESC, c.chunk_id LIMIT :k"
    )


def _kth_score(hits: dict[int, float], k: int) -> float:
    return sorted(hits.values(), reverse=True)[k - 1] if len(hits) >= k else 0.0



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
                else "its search tables are missing (run `openbailian search reindex`)"
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
        query_vector: QueryVector,
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
