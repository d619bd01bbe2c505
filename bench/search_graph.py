"""The in-process index's HNSW graph at scale, in one run beside pgvector's dense side.

    .venv/bin/python bench/search_graph.py --postgres-url postgresql://postgres@127.0.0.1:55515/postgres \
        --size 1000000 [--cache /tmp/openbailian-bench-search]

For a database ``bench/search.py`` loaded before (``obbench_search_<size>``; its loader is not run,
so nothing is migrated): the base is loaded into the in-process index as a server loads it, searched
exactly (hybrid, both query sets: noise 0.3 -- near-random -- and 0.03 -- paraphrase-like), pgvector's
dense side answers the same queries at ``ef_search`` 40/200/400, then the usearch graph is built the
way the server builds it (one thread, in the background, exact search serving meanwhile) and searched
again. Prints one JSON line per measurement (p50/p95 in ms, recall@10 against exact dense search).
"""

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import onnxruntime  # noqa: E402,F401  (before usearch, as a server has it loaded)

from bench import search as B  # noqa: E402
from openbailian.knowledge.index import MemoryIndex  # noqa: E402
from openbailian.knowledge.search_pg import PgSearch  # noqa: E402
from openbailian.storage.db import Database  # noqa: E402


def _out(**record: object) -> None:
    print(json.dumps(record), flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def _pgvector_dense(url: str, data: B.Dataset, label: str) -> None:
    db = Database(url)
    try:
        for ef in (40, 200, 400):
            pg = PgSearch(db, B.DIM, ef_search=ef)
            await B._run(pg, B.base_id_of(data.size), B._Head(data, 5), keywords=False)  # warm the cache
            times, _, dense = await B._run(pg, B.base_id_of(data.size), data, keywords=False)
            _out(what=f"pgvector dense ef_search={ef}", queries=label, p50=B._pct(times, 50),
                 p95=B._pct(times, 95), recall=B._recall(dense, data.exact_dense))
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path(B.tempfile.gettempdir()) / "openbailian-bench-search")
    args = parser.parse_args()
    B.pin_blas_threads(1)
    url = B._database_url(args.postgres_url, f"obbench_search_{args.size}")
    sets = {label: B.dataset(args.cache, args.size, args.queries, noise) for label, noise in
            (("noise 0.3", B.QUERY_NOISE), ("noise 0.03", 0.03))}
    base_id = B.base_id_of(args.size)
    _out(load=_load())
    db = Database(url)
    rss0 = B._status_kb("VmRSS")
    memory = MemoryIndex(db, B.DIM, hnsw_threshold=10**12)  # the graph later, timed by itself
    t0 = time.perf_counter()
    state = await memory.state(base_id, 1)
    _out(phase="load", seconds=time.perf_counter() - t0, rss_mb=(B._status_kb("VmRSS") - rss0) / 1024)
    for label, data in sets.items():
        times, _ = await asyncio.to_thread(B._exact_hybrid, state, data)
        exact = [[int(state.chunk_ids[r]) for r, _ in state.exact.search(v, 10)] for v in data.query_vectors]
        _out(what="in process exact hybrid", queries=label, p50=B._pct(times, 50), p95=B._pct(times, 95),
             recall=B._recall(exact, data.exact_dense))
        await _pgvector_dense(url, data, label)
    _out(load=_load())
    t0 = time.perf_counter()
    await asyncio.to_thread(MemoryIndex._build_graph, state)  # what the server runs in the background
    _out(phase="graph", seconds=time.perf_counter() - t0, rss_mb=(B._status_kb("VmRSS") - rss0) / 1024,
         peak_mb=B._status_kb("VmHWM") / 1024, load=_load())
    for label, data in sets.items():
        times, _, dense = await B._run(memory, base_id, data, keywords=False)
        hybrid_times, _, _ = await B._run(memory, base_id, data)
        _out(what="in process usearch HNSW ef=512", queries=label, dense_p50=B._pct(times, 50),
             dense_p95=B._pct(times, 95), hybrid_p50=B._pct(hybrid_times, 50),
             recall=B._recall(dense, data.exact_dense))
    await memory.aclose()
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
