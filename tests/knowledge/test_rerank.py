"""The optional reranker: a scripted rerank service on a loopback port decides the order.

The service scores each document it is sent by a rule the tests know (a keyword wins,
otherwise later candidates beat earlier ones), so the expected order is computed from
what it actually received; in fallback cases the documents it received are the fused
order itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pydantic
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from openbailian.config import Settings
from openbailian.knowledge.rerank import HTTPReranker, RerankError, reranker_from_settings
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.services import knowledge as kb
from openbailian.storage.db import Database, migrate
from tests.knowledge.test_knowledge_api import _create, _upload, _wait
from tests.knowledge.test_knowledge_pipeline import _add, _base
from tests.support import LiveServer, free_port, serve_in_thread

LEAVE = "How many days of annual leave?"
KEYWORD = "reimbursed"  # only on the HR policy's page 3, which the fused ranking puts below page 2
DASHSCOPE_PATH = "/api/v1/services/rerank/text-rerank/text-rerank"


def score(index: int, document: str, count: int, keyword: str | None) -> float:
    if keyword and keyword in document:
        return 0.95
    return 0.5 * (index + 1) / (count + 1)


@dataclass
class Call:
    path: str
    authorization: str | None
    body: dict[str, Any]

    @property
    def dashscope(self) -> bool:
        return self.path == DASHSCOPE_PATH

    @property
    def documents(self) -> list[str]:
        return self.body["input"]["documents"] if self.dashscope else self.body["documents"]

    @property
    def query(self) -> str:
        return self.body["input"]["query"] if self.dashscope else self.body["query"]

    @property
    def top_n(self) -> int:
        return self.body["parameters"]["top_n"] if self.dashscope else self.body["top_n"]

    def expected(self, keyword: str | None = KEYWORD) -> list[str]:
        """The documents in the order the scripted rule ranks them, ``top_n`` of them."""
        docs = self.documents
        order = sorted(range(len(docs)), key=lambda i: -score(i, docs[i], len(docs), keyword))
        return [docs[i] for i in order[: self.top_n]]


@dataclass
class ScriptedReranker:
    url: str  # the "rerank" style base URL (…/v1); the DashScope one is ``dashscope_url``
    dashscope_url: str
    calls: list[Call] = field(default_factory=list)
    mode: str = "keyword"  # or: unsorted, 500, not-json, no-results, bad-index, bad-score, slow
    keyword: str | None = KEYWORD


def _answer(service: ScriptedReranker, call: Call) -> Response:
    docs = call.documents
    results = [{"index": i, "relevance_score": score(i, d, len(docs), service.keyword)} for i, d in enumerate(docs)]
    if service.mode != "unsorted":
        results = sorted(results, key=lambda r: -r["relevance_score"])[: call.top_n]
    if service.mode == "bad-index":
        results[0]["index"] = len(docs)
    if service.mode == "bad-score":
        results[0]["relevance_score"] = "high"
    if service.mode == "500":
        return JSONResponse({"code": "InternalError", "message": "boom"}, status_code=500)
    if service.mode == "not-json":
        return PlainTextResponse("<html>gateway error</html>")
    if service.mode == "no-results":
        return JSONResponse({"ok": True})
    if call.dashscope:
        return JSONResponse({"output": {"results": results}, "usage": {"total_tokens": 1}, "request_id": "r1"})
    return JSONResponse({"id": "r1", "results": results})


@pytest.fixture
def reranker() -> Iterator[ScriptedReranker]:
    service = ScriptedReranker("", "")

    async def handle(request: Request) -> Response:
        call = Call(request.url.path, request.headers.get("authorization"), await request.json())
        service.calls.append(call)
        if service.mode == "slow":
            await asyncio.sleep(1.5)
        return _answer(service, call)

    app = Starlette(routes=[Route("/v1/rerank", handle, methods=["POST"]),
                            Route(DASHSCOPE_PATH, handle, methods=["POST"])])
    with serve_in_thread(app) as url:
        service.url, service.dashscope_url = f"{url}/v1", f"{url}/api/v1"
        yield service


def _rerank_settings(settings: Settings, service: ScriptedReranker, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "knowledge_rerank_base_url": service.url,
        "knowledge_rerank_model": "bge-reranker-test",
        "knowledge_rerank_api_key": "rk-secret",
    }
    values.update(overrides)
    return settings.model_copy(update=values)


@pytest.fixture
async def make_system(settings, embedder):  # type: ignore[no-untyped-def]
    """Build a KnowledgeSystem from (overridden) settings; the bundled embedder is shared."""
    settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate, settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    systems: list[KnowledgeSystem] = []

    def make(configured: Settings) -> KnowledgeSystem:
        systems.append(KnowledgeSystem.from_settings(db, configured, embedder=embedder))
        return systems[-1]

    yield make
    for system in systems:
        await system.aclose()
    await db.dispose()


async def _hr_and_phones(system: KnowledgeSystem, corpus) -> str:  # type: ignore[no-untyped-def]
    base = await _base(system)
    for name in ("hr", "phones"):
        document = await _add(system, base, corpus[name])
        assert await system.ingestor.ingest(document.id) == "FILE_IS_READY"
    return base.id


async def _search(system: KnowledgeSystem, base_id: str, query: str, top_k: int = 5, **options: Any):  # type: ignore[no-untyped-def]
    request = await kb.parse_search_options(system.db, "ws1", [base_id], options, system.retriever)
    return await kb.search(system.retriever, request, query, top_k=top_k)


def _sent_for(hits, call: Call) -> list[str]:  # type: ignore[no-untyped-def]
    """The documents of ``call`` that these hits are (the reranker may see a title line first)."""
    matched = []
    for hit in hits:
        text = hit["text"] if isinstance(hit, dict) else hit.text
        matched.append(next(d for d in call.documents if d.endswith(text)))
    return matched


# ---------------------------------------------------------------- end to end


def test_the_rerankers_order_decides_the_doc_references(settings, corpus, reranker):
    server = LiveServer(_rerank_settings(settings, reranker)).start()
    try:
        index_id = _create(server)
        for uploaded in _upload(server, index_id, corpus["hr"], corpus["phones"]):
            assert _wait(server, uploaded["file_id"])["status"] == "FILE_IS_READY"
        app_id = server.app(knowledge_enabled=True, knowledge_base_ids=[index_id], show_sources=True)
        response = server.call(app_id, {"input": {"prompt": LEAVE}})
        assert response.status_code == 200, response.text
        references = response.json()["output"]["doc_references"]

        [call] = reranker.calls
        assert call.path == "/v1/rerank" and call.authorization == "Bearer rk-secret"
        assert call.body["model"] == "bge-reranker-test" and call.query == LEAVE
        assert call.top_n == 5 and 5 < len(call.documents) <= 20  # every chunk is a candidate
        assert _sent_for(references, call) == call.expected()
        # the keyword's passage (page 3) now leads; without the reranker page 2 does
        assert KEYWORD in references[0]["text"] and references[0]["page_number"] == [3]
    finally:
        server.stop()


def test_a_failing_reranker_still_answers_in_the_fused_order(settings, corpus, reranker):
    reranker.mode = "500"
    server = LiveServer(_rerank_settings(settings, reranker)).start()
    try:
        index_id = _create(server)
        for uploaded in _upload(server, index_id, corpus["hr"], corpus["phones"]):
            _wait(server, uploaded["file_id"])
        app_id = server.app(knowledge_enabled=True, knowledge_base_ids=[index_id], show_sources=True)
        response = server.call(app_id, {"input": {"prompt": LEAVE}})
        assert response.status_code == 200, response.text
        references = response.json()["output"]["doc_references"]
        [call] = reranker.calls
        assert _sent_for(references, call) == call.documents[:5]  # what was sent is the fused order
        assert references[0]["page_number"] == [2]
    finally:
        server.stop()


# ---------------------------------------------------------------- the retriever


async def test_dashscope_style_request_and_answer(settings, corpus, reranker, make_system):
    system = make_system(_rerank_settings(settings, reranker, knowledge_rerank_base_url=reranker.dashscope_url,
                                          knowledge_rerank_api="dashscope", knowledge_rerank_model="gte-rerank-v2"))
    base_id = await _hr_and_phones(system, corpus)
    hits = await _search(system, base_id, LEAVE, top_k=3)

    [call] = reranker.calls
    assert call.path == DASHSCOPE_PATH and call.authorization == "Bearer rk-secret"
    assert call.body["model"] == "gte-rerank-v2"
    assert call.body["input"]["query"] == LEAVE
    assert call.body["parameters"] == {"top_n": 3, "return_documents": False}
    assert _sent_for(hits, call) == call.expected()
    assert hits[0].score == pytest.approx(0.95)


async def test_candidates_and_top_n_are_respected(settings, corpus, reranker, make_system):
    system = make_system(_rerank_settings(settings, reranker, knowledge_rerank_candidates=4))
    base_id = await _hr_and_phones(system, corpus)
    hits = await _search(system, base_id, LEAVE, top_k=2)
    call = reranker.calls[-1]
    assert len(call.documents) == 4 and call.top_n == 2
    assert _sent_for(hits, call) == call.expected()

    # fewer candidates than a call keeps: the call's top_k are still all sent
    system.retriever.rerank_candidates = 1
    hits = await _search(system, base_id, LEAVE, top_k=3)
    call = reranker.calls[-1]
    assert len(call.documents) == 3 and call.top_n == 3 and len(hits) == 3


async def test_results_out_of_order_are_sorted_by_score(settings, corpus, reranker, make_system):
    reranker.mode = "unsorted"
    system = make_system(_rerank_settings(settings, reranker))
    base_id = await _hr_and_phones(system, corpus)
    hits = await _search(system, base_id, LEAVE, top_k=3)
    call = reranker.calls[-1]
    assert _sent_for(hits, call) == call.expected()[:3]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_min_score_drops_weak_passages(settings, corpus, reranker, make_system):
    system = make_system(_rerank_settings(settings, reranker, knowledge_rerank_min_score=0.6))
    base_id = await _hr_and_phones(system, corpus)
    hits = await _search(system, base_id, LEAVE)
    assert len(hits) == 1 and KEYWORD in hits[0].text

    reranker.keyword = None  # nothing scores above 0.5 now
    assert await _search(system, base_id, LEAVE) == []


@pytest.mark.parametrize("mode", ["500", "not-json", "no-results", "bad-index", "bad-score", "slow", "down"])
async def test_a_broken_reranker_falls_back_to_the_fused_order(settings, corpus, reranker, make_system, caplog, mode):
    system = make_system(settings)
    base_id = await _hr_and_phones(system, corpus)
    fused = [h.chunk_id for h in await _search(system, base_id, LEAVE)]

    url = f"http://127.0.0.1:{free_port()}/v1" if mode == "down" else reranker.url
    reranker.mode = mode
    broken = make_system(_rerank_settings(settings, reranker, knowledge_rerank_base_url=url,
                                          knowledge_rerank_timeout_seconds=0.3, knowledge_rerank_min_score=0.99))
    with caplog.at_level(logging.WARNING, logger="openbailian.knowledge"):
        hits = await _search(broken, base_id, LEAVE)
    assert [h.chunk_id for h in hits] == fused  # min_score is not applied without scores
    assert any("reranking failed" in r.getMessage() for r in caplog.records)
    assert len(reranker.calls) == (0 if mode == "down" else 1)


async def test_structured_filter_searches_are_not_reranked(settings, corpus, reranker, make_system):
    system = make_system(_rerank_settings(settings, reranker))
    base = await _base(system, kind="structured")
    document = await _add(system, base, corpus["prices"])
    assert await system.ingestor.ingest(document.id) == "FILE_IS_READY"
    hits = await _search(system, base.id, "手机", structured_filter={"型号": "通义 Vivid 7"})
    assert sorted(h.record["颜色"] for h in hits) == ["蓝色", "黑色"]
    assert reranker.calls == []


async def test_not_configured_means_no_http_request(settings, corpus, reranker, make_system, monkeypatch):
    assert reranker_from_settings(settings) is None
    system = make_system(settings)
    assert system.retriever.reranker is None
    base_id = await _hr_and_phones(system, corpus)

    def no_http(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an HTTP request was made")

    monkeypatch.setattr(httpx.Client, "send", no_http)
    monkeypatch.setattr(httpx.AsyncClient, "send", no_http)
    hits = await _search(system, base_id, LEAVE)
    assert hits and hits[0].pages == [2]
    assert reranker.calls == []


# ---------------------------------------------------------------- settings and client


def test_bad_settings_are_rejected():
    with pytest.raises(pydantic.ValidationError):
        Settings(knowledge_rerank_api="cohere-v9")
    with pytest.raises(pydantic.ValidationError):
        Settings(knowledge_rerank_candidates=0)
    with pytest.raises(ValueError, match="unknown rerank API style"):
        HTTPReranker("http://127.0.0.1:1/v1", "m", api="other")  # type: ignore[arg-type]


def test_the_client_raises_clear_errors(reranker):
    client = HTTPReranker(reranker.url, "m", timeout=2)
    try:
        assert client.rerank("q", [], 3) == []
        assert len(reranker.calls) == 0  # nothing to rank, nothing sent
        reranker.mode = "500"
        with pytest.raises(RerankError, match="HTTP 500"):
            client.rerank("q", ["a", "b"], 1)
        reranker.mode = "bad-index"
        with pytest.raises(RerankError, match="bad index 2 for 2 documents"):
            client.rerank("q", ["a", "b"], 5)
        assert reranker.calls[-1].top_n == 2  # top_n never exceeds the documents sent
    finally:
        client.close()
    down = HTTPReranker(f"http://127.0.0.1:{free_port()}", "m", timeout=2)
    with pytest.raises(RerankError, match="unreachable"):
        down.rerank("q", ["a"], 1)
    down.close()
