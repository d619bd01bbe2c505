"""Retrieval quality of an embedder on a labelled set (bench/data/retrieval_eval.json's shape)."""

from __future__ import annotations

from typing import Any

import numpy as np

from openbailian.knowledge.embed import Embedder

__all__ = ["dense_hits"]


def dense_hits(embedder: Embedder, data: dict[str, Any]) -> tuple[int, int]:
    """How many of ``data["queries"]`` ([query, passage id] pairs) find their passage first and in
    the top five among ``data["passages"]`` ({id: text}), by cosine alone."""
    ids = list(data["passages"])
    matrix = embedder.embed_passages([data["passages"][i] for i in ids])
    at1 = at5 = 0
    for query, wanted in data["queries"]:
        ranked = [ids[i] for i in np.argsort(-(matrix @ embedder.embed_query(query)))[:5]]
        at1 += ranked[0] == wanted
        at5 += wanted in ranked
    return at1, at5
