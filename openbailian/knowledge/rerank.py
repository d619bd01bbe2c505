"""Rerankers: score retrieved passages against the query with a cross-encoder service.

Two HTTP styles are spoken:

- ``rerank``: ``POST {base_url}/rerank`` with ``{"model", "query", "documents", "top_n"}``
  → ``{"results": [{"index", "relevance_score"}]}`` (Cohere/Jina style; vLLM, llama.cpp's
  server, Xinference, Jina and Cohere serve it);
- ``dashscope``: ``POST {base_url}/services/rerank/text-rerank/text-rerank`` with
  ``{"model", "input": {"query", "documents"}, "parameters": {"top_n", "return_documents"}}``
  → ``{"output": {"results": [...]}}`` (DashScope's gte-rerank models).

Methods block: call them from a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import httpx

from openbailian.errors import RerankError

if TYPE_CHECKING:
    from openbailian.config import Settings

__all__ = [
    "RerankApi",
    "RerankError",
    "Ranked",
    "Reranker",
    "HTTPReranker",
    "reranker_from_settings",
]

RerankApi = Literal["rerank", "dashscope"]
_PATHS: dict[str, str] = {"rerank": "/rerank", "dashscope": "/services/rerank/text-rerank/text-rerank"}


@dataclass(frozen=True, slots=True)
class Ranked:
    index: int  # position in the documents that were sent
    score: float


@runtime_checkable
class Reranker(Protocol):
    def rerank(self, query: str, documents: list[str], top_n: int) -> list[Ranked]:
        """The best ``top_n`` of ``documents`` for ``query``, best first; raises ``RerankError``."""
        ...

    def close(self) -> None: ...


class HTTPReranker:
    """A rerank model behind HTTP, in either API style."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api: RerankApi = "rerank",
        api_key: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if api not in _PATHS:
            raise ValueError(f"unknown rerank API style {api!r}; expected one of {', '.join(_PATHS)}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self._api = api
        self._model = model

    def rerank(self, query: str, documents: list[str], top_n: int) -> list[Ranked]:
        if not documents:
            return []
        top_n = max(1, min(top_n, len(documents)))
        try:
            response = self._client.post(_PATHS[self._api], json=self._body(query, documents, top_n))
        except httpx.HTTPError as error:
            raise RerankError(f"rerank service unreachable: {error!r}") from error
        if response.status_code != 200:
            raise RerankError(f"rerank service answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json()
        except ValueError as error:
            raise RerankError(f"rerank service answered non-JSON: {response.text[:200]}") from error
        ranked = _parse(payload, self._api, len(documents))
        # Some servers return results in input order: the scores decide (stable for ties).
        return sorted(ranked, key=lambda item: -item.score)[:top_n]

    def _body(self, query: str, documents: list[str], top_n: int) -> dict[str, Any]:
        if self._api == "dashscope":
            return {
                "model": self._model,
                "input": {"query": query, "documents": documents},
                "parameters": {"top_n": top_n, "return_documents": False},
            }
        return {"model": self._model, "query": query, "documents": documents, "top_n": top_n}

    def close(self) -> None:
        self._client.close()


def _parse(payload: Any, api: RerankApi, count: int) -> list[Ranked]:
    container = payload.get("output") if api == "dashscope" and isinstance(payload, dict) else payload
    results = container.get("results") if isinstance(container, dict) else None
    if not isinstance(results, list):
        raise RerankError(f"rerank answer has no results list: {str(payload)[:200]}")
    ranked: list[Ranked] = []
    seen: set[int] = set()
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score") if isinstance(item, dict) else None
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count or index in seen:
            raise RerankError(f"rerank answer has a bad index {index!r} for {count} documents")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise RerankError(f"rerank answer has a bad relevance_score {score!r}")
        seen.add(index)
        ranked.append(Ranked(index, float(score)))
    return ranked


def reranker_from_settings(settings: Settings) -> Reranker | None:
    """The configured reranker, or None when ``knowledge_rerank_base_url`` is unset."""
    if not settings.knowledge_rerank_base_url:
        return None
    return HTTPReranker(
        settings.knowledge_rerank_base_url,
        settings.knowledge_rerank_model,
        api=settings.knowledge_rerank_api,
        api_key=settings.knowledge_rerank_api_key,
        timeout=settings.knowledge_rerank_timeout_seconds,
    )
