"""Keyword side of hybrid search: jieba segmentation (Chinese and English) and BM25.

Hand-written on numpy because the index must grow and shrink by single
documents and score only the rows a filter allows; libraries such as rank-bm25
rebuild from scratch and score everything.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import struct
import tempfile
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["terms", "keep_dictionary_in", "load_dictionary", "query_terms", "known_query_terms", "quick_query_terms", "BM25Index"]

logger = logging.getLogger("openbailian.knowledge")
_WORD = re.compile(r"\w", re.UNICODE)
_jieba_lock = threading.Lock()
_jieba_ready = False


_dictionary_dir: list[Path] = []  # where the prefix dictionary is kept (the home's models folder)


def keep_dictionary_in(directory: Path) -> None:
    """Keep jieba's prefix dictionary in ``directory`` (see :func:`load_dictionary`)."""
    with _jieba_lock:
        _dictionary_dir[:] = [directory]


def _jieba() -> Any:  # jieba has no types
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                jieba.setLogLevel(logging.WARNING)
                load_dictionary(jieba.dt, _dictionary_dir[0] if _dictionary_dir else None)
                _jieba_ready = True
    return jieba


_DICTIONARY_MAGIC = b"OBJD1\n"


def load_dictionary(tokenizer: Any, directory: Path | None) -> None:
    """Load ``tokenizer``'s (a ``jieba.Tokenizer`` on its default dictionary) prefix dictionary.

    jieba keeps it as a marshal file in the system's temporary folder, and loading that
    (~500k words and prefixes) is 0.6-1.4 s of CPU holding the GIL at the start of every
    ``kb add``. Here it is kept in ``directory`` as the words joined in one text and their
    counts in an array, ~3x faster to load, named by the digest of jieba's dictionary file
    and checked against its own digest: the same words and counts as jieba's, so the same cuts.
    """
    if directory is None:
        tokenizer.initialize()
        return
    path = directory / f"jieba-{_dictionary_digest(tokenizer)}.prefixes"
    loaded = _read_prefixes(path)
    with tokenizer.lock:
        if loaded is not None:
            tokenizer.FREQ, tokenizer.total = loaded
            tokenizer.initialized = True
            return
    tokenizer.initialize()
    try:
        _write_prefixes(path, tokenizer.FREQ, tokenizer.total)
    except OSError:
        logger.warning("could not keep jieba's dictionary in %s", directory, exc_info=True)


def _dictionary_digest(tokenizer: Any) -> str:
    with tokenizer.get_dict_file() as file:
        return hashlib.sha256(file.read()).hexdigest()[:16]


def _read_prefixes(path: Path) -> tuple[dict[str, int], int] | None:
    """The words and counts kept in ``path``; None when it is missing, cut short or changed."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_DICTIONARY_MAGIC) + 48
    if len(data) < head or not data.startswith(_DICTIONARY_MAGIC):
        return None
    count, total = struct.unpack_from("<QQ", data, len(_DICTIONARY_MAGIC))
    digest = data[head - 32 : head]
    body = memoryview(data)[head:]
    if hashlib.sha256(body).digest() != digest or len(body) < 8 * count:
        return None
    counts = np.frombuffer(body, "<i8", count)
    words = bytes(body[8 * count :]).decode("utf-8").split("\n")
    if len(words) != count:
        return None
    return dict(zip(words, counts.tolist(), strict=True)), total


def _write_prefixes(path: Path, frequencies: dict[str, int], total: int) -> None:
    if any("\n" in word for word in frequencies):
        return  # not the default dictionary: jieba's own cache serves it
    counts = np.fromiter(frequencies.values(), "<i8", len(frequencies)).tobytes()
    body = counts + "\n".join(frequencies).encode("utf-8")
    header = _DICTIONARY_MAGIC + struct.pack("<QQ", len(frequencies), total) + hashlib.sha256(body).digest()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, staged = tempfile.mkstemp(dir=path.parent, prefix=".jieba-")
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(header + body)
        os.replace(staged, path)  # atomic: another process never reads half a file
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def terms(text: str) -> list[str]:
    """Search terms: jieba's search-mode words (overlapping for long words), lower-cased."""
    return [
        token.lower()
        for token in _jieba().cut_for_search(text)
        if token.strip() and _WORD.search(token)
    ]


_QUERY_TERMS_KEPT = 1024
_query_terms: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_query_terms_lock = threading.Lock()


def known_query_terms(text: str) -> tuple[str, ...] | None:
    """The terms of a question seen lately (by :func:`query_terms`), without cutting it."""
    with _query_terms_lock:
        found = _query_terms.get(text)
        if found is not None:
            _query_terms.move_to_end(text)
        return found


def query_terms(text: str) -> tuple[str, ...]:
    """:func:`terms` of a question; the last 1024 questions' are kept (a repeated one is not cut again)."""
    found = known_query_terms(text)
    if found is None:
        found = tuple(terms(text))
        with _query_terms_lock:
            _query_terms[text] = found
            while len(_query_terms) > _QUERY_TERMS_KEPT:
                _query_terms.popitem(last=False)
    return found


QUICK_QUERY_CHARS = 64  # cut on the caller's thread up to this length (~0.1-0.5 ms of jieba)


def quick_query_terms(text: str) -> tuple[str, ...] | None:
    """A question's terms when they cost no more than a thread hop would: kept already, or a short
    question once jieba's dictionary is loaded. None: cut it with :func:`query_terms` in a thread."""
    found = known_query_terms(text)
    if found is None and _jieba_ready and len(text) <= QUICK_QUERY_CHARS:
        found = query_terms(text)
    return found


class BM25Index:
    """Rows are appended (never reordered); removed rows are masked until a rebuild."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lengths = np.zeros(0, dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return int(self._alive.sum())

    def add(self, documents: list[list[str]]) -> None:
        """Append rows (in order), one list of terms each."""
        start = len(self._lengths)
        grouped: dict[str, tuple[list[int], list[int]]] = {}
        for offset, document in enumerate(documents):
            for term, tf in Counter(document).items():
                rows, tfs = grouped.setdefault(term, ([], []))
                rows.append(start + offset)
                tfs.append(tf)
        for term, (rows, tfs) in grouped.items():
            new_rows, new_tfs = np.asarray(rows, np.int64), np.asarray(tfs, np.float32)
            old = self._postings.get(term)
            if old is not None:
                new_rows, new_tfs = np.concatenate([old[0], new_rows]), np.concatenate([old[1], new_tfs])
            self._postings[term] = (new_rows, new_tfs)
        lengths = np.asarray([len(d) for d in documents], dtype=np.float32)
        self._lengths = np.concatenate([self._lengths, lengths])
        self._alive = np.concatenate([self._alive, np.ones(len(documents), dtype=bool)])

    def remove(self, rows: np.ndarray) -> None:
        self._alive[rows] = False

    def search(self, query: Sequence[str], k: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Best ``k`` rows as (row, score), score > 0, restricted to ``mask`` when given."""
        n = len(self._lengths)
        alive = self._alive if mask is None else self._alive & mask
        count = int(alive.sum())
        if count == 0 or not query:
            return []
        avg = float(self._lengths[alive].mean()) or 1.0
        scores = np.zeros(n, dtype=np.float32)
        for term in set(query):
            posting = self._postings.get(term)
            if posting is None:
                continue
            rows, tfs = posting
            live = alive[rows]
            rows, tfs = rows[live], tfs[live]
            if len(rows) == 0:
                continue
            idf = math.log(1 + (count - len(rows) + 0.5) / (len(rows) + 0.5))
            norm = tfs + self.k1 * (1 - self.b + self.b * self._lengths[rows] / avg)
            scores[rows] += idf * tfs * (self.k1 + 1) / norm
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        hits = hits[np.argsort(-scores[hits], kind="stable")]
        return [(int(r), float(scores[r])) for r in hits]
