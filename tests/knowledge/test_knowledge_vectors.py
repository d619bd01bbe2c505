"""Exact and HNSW vector indexes: filters, removal, agreement."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from openbailian.knowledge.bm25 import BM25Index
from openbailian.knowledge.vectors import ExactVectorIndex, HnswVectorIndex


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, 32)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_hnsw_agrees_with_exact_and_honours_masks_and_removal():
    vectors = _vectors(3000)
    exact = ExactVectorIndex(32)
    exact.add(vectors[:2000])
    graph = HnswVectorIndex(exact)
    graph.add(vectors[2000:])  # appended after the graph was built
    query = vectors[2500]
    assert graph.search(query, 1)[0][0] == 2500
    assert [r for r, _ in graph.search(query, 10)] == [r for r, _ in exact.search(query, 10)]
    mask = np.zeros(3000, dtype=bool)
    mask[:100] = True
    assert all(r < 100 for r, _ in graph.search(query, 10, mask))
    graph.remove(np.array([2500]))
    assert 2500 not in {r for r, _ in graph.search(query, 50)}
    assert not exact.matrix[2500].any()  # the vector itself is gone


def test_bm25_ranks_by_terms_and_skips_removed_rows():
    index = BM25Index()
    index.add([["年假", "十五", "天"], ["报销", "三十", "天"], ["手机", "价格"]])
    assert index.search(["年假"], 5)[0][0] == 0
    index.remove(np.array([0]))
    assert index.search(["年假"], 5) == []
    assert [r for r, _ in index.search(["天"], 5)] == [1]


def test_a_process_that_built_an_hnsw_graph_can_still_run_ocr():
    """A server that builds a large base's graph before its first image must not crash
    (usearch then onnxruntime segfaulted in one process)."""
    script = (
        "import numpy as np\n"
        "from openbailian.knowledge.vectors import ExactVectorIndex, HnswVectorIndex\n"
        "exact = ExactVectorIndex(8)\n"
        "exact.add(np.eye(8, dtype=np.float32)[:3])\n"
        "HnswVectorIndex(exact)\n"
        "import onnxruntime\n"
        "print('alive', onnxruntime.get_device())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("alive")
