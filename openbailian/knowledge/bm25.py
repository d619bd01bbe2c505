"""Keyword side of hybrid search: jieba segmentation (Chinese and English) and BM25.

Hand-written on numpy because the index must grow and shrink by single
documents and score only the rows a filter allows; libraries such as rank-bm25
rebuild from scratch and score everything.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["terms", "query_terms", "known_query_terms", "quick_query_terms", "BM25Index"]

_WORD = re.compile(r"\w", re.UNICODE)
_jieba_lock = threading.Lock()
_jieba_ready = False


def _jieba() -> Any:  # jieba has no types
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba_ready = True
    return jieba


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
