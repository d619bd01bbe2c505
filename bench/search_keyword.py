"""Keyword search in PostgreSQL against the in-process BM25, in one run.

    .venv/bin/python bench/search_keyword.py --postgres-url postgresql://postgres@127.0.0.1:55514/postgres \
        [--sizes 100000] [--queries 200]

bench/search.py's synthetic chunks (Zipf-distributed terms, same seed and cache) are written
to a database of that server (``obbench_keyword_<n>``, made anew each run) with their
keyword rows only (no vectors: the keyword side alone is measured). The same queries (six
terms of a chunk) then go to:

- the in-process ``BM25Index`` (the reference: what SQLite deployments rank by);
- ``PgSearch``'s keyword side (BM25 with per-base idf, MaxScore candidates), through the
  search port with no query vector, without and with the document mask retrieval passes
  (every ready document of the base);
- PostgreSQL's ``ts_rank`` over the same tsvector (what the keyword side was before 0017).

Each reports p50/p95 of the top-40 (the retriever's candidates), its overlap with the
reference (top-10 and top-40), and how many queries got exactly the reference's top-k
scores (ties at the cut may pick other chunks of the same score). Prints markdown. Any
checkout's ``openbailian`` can be measured: run this file from a copy in that checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search import (  # noqa: E402
    _LENGTH_OF_TERMS,
    _TSV_OF_TERMS,
    CHUNKS_PER_DOCUMENT,
    Dataset,
    _admin,
    _copy_chunks,
    _database_url,
    _engine,
    base_id_of,
    dataset,
)
from openbailian.knowledge.bm25 import BM25Index  # noqa: E402
from openbailian.knowledge.search import ChunkMask  # noqa: E402
from openbailian.knowledge.search_pg import PgSearch, ensure_schema, tsquery_literal  # noqa: E402
from openbailian.storage.db import Database, migrate  # noqa: E402

CANDIDATES = 40
DIM = 384


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def _overlap(found: list[list[int]], truth: list[list[int]], k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / len(b[:k]) for a, b in zip(found, truth, strict=True) if b]))


def _load(server_url: str, data: Dataset) -> str:
    from sqlalchemy import text

    name = f"obbench_keyword_{data.size}"
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(server_url, f'CREATE DATABASE "{name}"')
    url = _database_url(server_url, name)
    migrate(url)
    _copy_chunks(url, data)
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            ensure_schema(connection)
            connection.execute(text(  # keyword rows only; the statistics follow by trigger
                "INSERT INTO knowledge_chunk_search (chunk_id, base_id, document_id, dim, embedding, tsv, length) "
                f"SELECT c.id, c.base_id, c.document_id, 0, NULL, {_TSV_OF_TERMS}, {_LENGTH_OF_TERMS} FROM knowledge_chunks c"
            ))
            connection.execute(text("ANALYZE knowledge_chunk_search"))
    finally:
        engine.dispose()
    return url


def _reference(data: Dataset) -> tuple[list[list[int]], list[float], list[dict[int, float]]]:
    """The in-process top 40 of each query, its times, and every chunk's score (for exactness)."""
    index = BM25Index()
    index.add([terms.split() for terms in data.terms()])
    hits, times, scores = [], [], []
    for words in data.query_words:
        start = time.perf_counter()
        found = index.search(words, CANDIDATES)
        times.append(time.perf_counter() - start)
        hits.append([row + 1 for row, _ in found])  # row i is chunk i + 1
        scores.append({row + 1: score for row, score in index.search(words, data.size)})
    return hits, times, scores


def _exact(found: list[list[int]], truth: list[list[int]], scores: list[dict[int, float]], k: int) -> float:
    """Queries whose top k holds chunks of exactly the reference's top-k scores (chunks tied
    at the k-th score may differ: the in-process cut among equal scores is arbitrary)."""
    def same(a: list[int], b: list[int], score: dict[int, float]) -> bool:
        ours, theirs = [score.get(c, 0.0) for c in a[:k]], [score[c] for c in b[:k]]
        return len(ours) == len(theirs) and np.allclose(sorted(ours), sorted(theirs), rtol=1e-5, atol=1e-6)
    return float(np.mean([same(a, b, s) for a, b, s in zip(found, truth, scores, strict=True)]))


async def _port(db: Database, base_id: str, data: Dataset, mask: ChunkMask) -> tuple[list[list[int]], list[float]]:
    search = PgSearch(db, DIM)
    empty = np.zeros(0, np.float32)  # no dense query: the keyword side alone
    for words in data.query_words[:10]:
        await search.search(base_id, 1, mask, empty, words, CANDIDATES)  # warm the cache
    hits, times = [], []
    for words in data.query_words:
        start = time.perf_counter()
        found = await search.search(base_id, 1, mask, empty, words, CANDIDATES)
        times.append(time.perf_counter() - start)
        hits.append(found.keyword)
    return hits, times


async def _ts_rank(db: Database, base_id: str, data: Dataset) -> tuple[list[list[int]], list[float]]:
    from sqlalchemy import text

    sql = text(
        "SELECT s.chunk_id FROM knowledge_chunk_search s WHERE s.tsv @@ CAST(:tq AS tsquery) AND s.base_id = :b "
        "ORDER BY ts_rank(s.tsv, CAST(:tq AS tsquery), 1) DESC, s.chunk_id LIMIT :k"
    )
    hits, times = [], []
    async with db.begin() as connection:
        for words in data.query_words:
            start = time.perf_counter()
            rows = await connection.execute(sql, {"tq": tsquery_literal(words), "b": base_id, "k": CANDIDATES})
            hits.append([int(chunk) for chunk, in rows])
            times.append(time.perf_counter() - start)
    return hits, times


async def bench(server_url: str, cache: Path, n: int, queries: int) -> list[str]:
    data = dataset(cache, n, queries)
    t0 = time.perf_counter()
    url = await asyncio.to_thread(_load, server_url, data)
    load = time.perf_counter() - t0
    reference, reference_times, scores = await asyncio.to_thread(_reference, data)
    base_id = base_id_of(n)
    every_document = ChunkMask(
        document_ids=frozenset(f"{base_id}d{d}" for d in range((n + CHUNKS_PER_DOCUMENT - 1) // CHUNKS_PER_DOCUMENT))
    )
    db = Database(url)
    try:
        runs = [
            ("in process BM25Index (reference)", reference, reference_times),
            ("PostgreSQL BM25 (search port, no mask)", *await _port(db, base_id, data, ChunkMask())),
            ("PostgreSQL BM25 (search port, every document in the mask)", *await _port(db, base_id, data, every_document)),
            ("PostgreSQL ts_rank (before 0017)", *await _ts_rank(db, base_id, data)),
        ]
    finally:
        await db.dispose()
        _admin(server_url, f'DROP DATABASE IF EXISTS "obbench_keyword_{n}" WITH (FORCE)')
    rows = [
        f"| {n:,} | {label} | {_pct(times, 50):.1f} | {_pct(times, 95):.1f} | "
        f"{_overlap(hits, reference, 10):.3f} | {_overlap(hits, reference, 40):.3f} | "
        f"{_exact(hits, reference, scores, 10):.3f} | {_exact(hits, reference, scores, 40):.3f} |"
        for label, hits, times in runs
    ]
    return rows + [f"<!-- {n:,} chunks loaded (chunks + keyword rows + statistics) in {load:.1f} s -->"]


def _rewrite_rows(server_url: str, cache: Path, n: int) -> list[str]:
    """What ``openbailian search reindex`` spends writing the search rows of ``n`` chunks (with
    their 384-d vectors) before its HNSW build: every row deleted, then written from the stored
    chunks as this checkout's ``search_pg`` writes them, the keyword indexes after; rolled back."""
    from sqlalchemy import text

    import openbailian.knowledge.search_pg as search_pg

    data = dataset(cache, n, 200)
    url = _load(server_url, data)
    engine = _engine(url)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            connection.execute(text("TRUNCATE knowledge_chunk_search, knowledge_term_stats, knowledge_search_stats"))
            start = time.perf_counter()
            if hasattr(search_pg, "_write_rows"):  # since 3bc9396: written by the server
                search_pg._write_rows(connection, only_missing=False)
                how = "rows in SQL, vectors by binary COPY"
            else:  # before: each row formatted in Python, copied in batches
                search_pg._add_missing(connection)
                how = "rows formatted in Python"
            rows = time.perf_counter() - start
            written = connection.execute(text("SELECT count(*), count(embedding) FROM knowledge_chunk_search")).one()
            start = time.perf_counter()
            search_pg.ensure_schema(connection)
            indexes = time.perf_counter() - start
            transaction.rollback()
    finally:
        engine.dispose()
        _admin(server_url, f'DROP DATABASE IF EXISTS "obbench_keyword_{n}" WITH (FORCE)')
    return [f"| {n:,} | {how} | {written[0]:,} ({written[1]:,} vectors) | {rows:.1f} | {indexes:.1f} |"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres-url", required=True, help="a PostgreSQL server with pgvector")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "openbailian-bench-search")
    parser.add_argument("--rows", action="store_true", help="time the search rows' rewrite of reindex instead")
    args = parser.parse_args()
    if args.rows:
        print("| chunks | search rows written | rows | writing (s) | keyword indexes after (s) |\n|---:|---|---:|---:|---:|")
        for n in args.sizes:
            print(*_rewrite_rows(args.postgres_url, args.cache, n), flush=True)
        return
    print(
        "| chunks | keyword search (top 40) | p50 (ms) | p95 (ms) | overlap@10 with BM25 | overlap@40 "
        "| top-10 scores exact | top-40 scores exact |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        for row in await bench(args.postgres_url, args.cache, n, args.queries):
            print(row, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
