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

``--upgrade`` times the upgrade of a base at migration 0017 to the newest revision instead:
``n`` chunks with their 384-d vectors and HNSW index are loaded once (``obbench_upgrade_<n>``,
kept: at this checkout's head, then downgraded to 0017), and each checkout given (``--checkouts``,
this one by default) migrates a copy of it (``CREATE DATABASE ... TEMPLATE``) in a process of
its own, timed; the table reports whether the search table, its primary key and its HNSW index
got new files (``relfilenode``: a rewrite). ``--upgrade-database URL`` times this checkout's
migration of an existing database the same way (e.g. the 1M one of bench/search.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
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
UPGRADE_FORMAT = 1  # bump when the upgrade's template changes: it is made anew


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


# --- the upgrade from 0017 ------------------------------------------------------------------

_FILES = (
    "SELECT c.relname, c.relfilenode FROM pg_class c WHERE c.relname IN "
    "('knowledge_chunk_search', 'knowledge_chunk_search_pkey') OR c.relname LIKE 'knowledge_chunk_search_hnsw_%'"
)
_LAYOUT = (
    "SELECT (SELECT count(*) FROM information_schema.columns WHERE table_name = 'knowledge_chunk_search' "
    "AND column_name = 'cells') > 0, to_regclass('knowledge_chunk_cells') IS NOT NULL, "
    "to_regclass('knowledge_chunk_search_tsv') IS NOT NULL"
)
_SIZES = (
    "SELECT pg_size_pretty(pg_total_relation_size('knowledge_chunk_search')), "
    "coalesce(pg_size_pretty(pg_total_relation_size(to_regclass('knowledge_chunk_cells'))), '-')"
)

# Run in a process of its own by each checkout's openbailian (first on its path).
_MIGRATE = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); "
    "from openbailian.storage.db import migrate; t = time.perf_counter(); migrate(sys.argv[2]); "
    "print(time.perf_counter() - t)"
)


def _layout(url: str) -> str:
    column, table, tsv = _admin(url, _LAYOUT)[0]
    cells = "generated column (first 0023)" if column else "own table" if table else "none (0017)"
    return f"cells: {cells}; tsv index: {'yes' if tsv else 'no'}"


def _upgrade_template(server_url: str, cache: Path, n: int) -> str:
    """A base of ``n`` chunks (vectors, HNSW index) at migration 0017, made once and kept."""
    from alembic import command

    from openbailian.knowledge.search_pg import rebuild
    from openbailian.storage.db import alembic_config

    name = f"obbench_upgrade_{n}"
    mark = f"openbailian bench/search_keyword.py upgrade format {UPGRADE_FORMAT}: {n} chunks at 0017"
    found = _admin(server_url, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", name)
    if found and found[0][0] == mark:
        return name
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(server_url, f'CREATE DATABASE "{name}"')
    url = _database_url(server_url, name)
    data = dataset(cache, n, 200)
    t0 = time.perf_counter()
    migrate(url)
    _copy_chunks(url, data)
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            rebuild(connection, [DIM])  # the rows, their vectors, the HNSW index, as `search reindex`
    finally:
        engine.dispose()
    config = alembic_config(url)
    command.downgrade(config, "0024-1")
    command.downgrade(config, "0023-1")
    _admin(url, "VACUUM ANALYZE")
    print(f"<!-- {n:,} chunks loaded and downgraded to 0017 in {time.perf_counter() - t0:.0f} s; {_layout(url)} -->",
          flush=True)
    _admin(server_url, f"COMMENT ON DATABASE \"{name}\" IS '{mark}'")
    return name


def _timed_migration(url: str, checkout: Path) -> tuple[float, str]:
    """Seconds ``checkout``'s migrate() took on ``url``, and what it rewrote."""
    before = dict(_admin(url, _FILES))
    result = subprocess.run(
        [sys.executable, "-c", _MIGRATE, str(checkout), url], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(checkout)}, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate() of {checkout} failed: {result.stderr[-2000:]}")
    after = dict(_admin(url, _FILES))
    rewritten = sorted(name for name in before if after.get(name) != before[name])
    return float(result.stdout.strip().splitlines()[-1]), ", ".join(rewritten) or "nothing"


def _commit_of(checkout: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip() or str(checkout)


def upgrade_rows(server_url: str, cache: Path, n: int, checkouts: list[Path], first: Path | None) -> list[str]:
    """A row per checkout: its migration of a copy of the 0017 base; with ``first``, a copy
    migrated by that checkout beforehand (not timed), e.g. one at the first form of 0023."""
    template = _upgrade_template(server_url, cache, n)
    rows = []
    for checkout in checkouts:
        copy = f"{template}_run"
        _admin(server_url, f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
        _admin(server_url, f'CREATE DATABASE "{copy}" TEMPLATE "{template}"')
        url = _database_url(server_url, copy)
        try:
            label = _commit_of(checkout)
            if first is not None:
                _timed_migration(url, first)
                label = f"{label}, after {_commit_of(first)}'s"
            seconds, rewritten = _timed_migration(url, checkout)
            table, cells = _admin(url, _SIZES)[0]
            rows.append(f"| {n:,} | {label} | {seconds:.1f} | {rewritten} | {_layout(url)} | {table} | {cells} |")
        finally:
            _admin(server_url, f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres-url", help="a PostgreSQL server with pgvector (not with --upgrade-database)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "openbailian-bench-search")
    parser.add_argument("--rows", action="store_true", help="time the search rows' rewrite of reindex instead")
    parser.add_argument("--upgrade", action="store_true", help="time the upgrade of a 0017 base instead")
    parser.add_argument("--checkouts", type=Path, nargs="+", default=[Path(__file__).resolve().parents[1]],
                        help="with --upgrade: the checkouts whose migrations are timed, in order")
    parser.add_argument("--migrated-first-by", type=Path, metavar="CHECKOUT",
                        help="with --upgrade: each copy is migrated by this checkout first (not timed)")
    parser.add_argument("--upgrade-database", metavar="URL", help="time this checkout's migration of this database")
    args = parser.parse_args()
    header = (
        "| chunks | migrations of | upgrade (s) | files rewritten | layout after | search table + indexes | "
        "cells table + index |\n|---:|---|---:|---|---|---:|---:|"
    )
    if args.upgrade_database:
        url = args.upgrade_database
        print(f"<!-- before: {_layout(url)}; search table + indexes {_admin(url, _SIZES)[0][0]} -->")
        seconds, rewritten = _timed_migration(url, Path(__file__).resolve().parents[1])
        table, cells = _admin(url, _SIZES)[0]
        chunks = _admin(url, "SELECT count(*) FROM knowledge_chunk_search")[0][0]
        print(header)
        print(f"| {chunks:,} | {_commit_of(Path(__file__).resolve().parents[1])} | {seconds:.1f} | {rewritten} | "
              f"{_layout(url)} | {table} | {cells} |")
        return
    if not args.postgres_url:
        parser.error("--postgres-url is required")
    if args.upgrade:
        print(header)
        for n in args.sizes:
            print(*upgrade_rows(args.postgres_url, args.cache, n, args.checkouts, args.migrated_first_by), sep="\n", flush=True)
        return
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
