"""A remote embedder that fails at query time: the call is refused as a model outage (503 in the
DashScope shape), not a 500, and the session is left alone."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import dashscope
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.api.test_errors import assert_error
from tests.api.test_seed_knowledge import create_base, upload
from tests.support import LiveServer, make_settings, serve_in_thread

DIM = 16


def _vector(text: str) -> list[float]:
    vector = np.zeros(DIM, dtype=np.float32)
    for i in range(max(1, len(text) - 2)):
        vector[hashlib.md5(text[i : i + 3].encode()).digest()[0] % DIM] += 1.0
    return vector.tolist()


class Embeddings:
    """An OpenAI-compatible /embeddings endpoint that can be told to fail."""

    def __init__(self) -> None:
        self.failing_with: int | None = None
        self.app = Starlette(routes=[Route("/v1/embeddings", self.embeddings, methods=["POST"])])

    async def embeddings(self, request: Request) -> JSONResponse:
        if self.failing_with is not None:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=self.failing_with)
        body = await request.json()
        data = [{"index": i, "embedding": _vector(t)} for i, t in enumerate(body["input"])]
        return JSONResponse({"data": data, "model": body["model"]})


@dataclass
class Outage:
    server: LiveServer
    embeddings: Embeddings
    app_id: str
    stop_embeddings: Callable[[], None]


@pytest.fixture
def outage(tmp_path: Path, database_url: str | None) -> Iterator[Outage]:
    """A server whose knowledge embedder is remote; one indexed document; an app linked to it."""
    embeddings = Embeddings()
    with ExitStack() as endpoint:
        url = endpoint.enter_context(serve_in_thread(embeddings.app))
        settings = make_settings(
            tmp_path / "home", database_url, knowledge_embedding_base_url=f"{url}/v1",
            knowledge_embedding_dim=DIM, knowledge_embedding_model="bge-m3",
        )
        server = LiveServer(settings).start()
        try:
            index_id = create_base(server, "handbook")
            doc = tmp_path / "leave.txt"
            doc.write_text("年假：员工每年享有十五天带薪年假。", encoding="utf-8")
            upload(server, index_id, doc)
            app_id = server.app(knowledge_enabled=True, knowledge_base_ids=[index_id])
            yield Outage(server, embeddings, app_id, endpoint.close)
        finally:
            server.stop()


def test_an_embedder_answering_503_makes_the_call_a_503_model_outage(outage: Outage) -> None:
    asked = {"input": {"prompt": "年假有几天？"}}
    assert outage.server.call(outage.app_id, asked).status_code == 200
    outage.embeddings.failing_with = 503
    new_question = {"input": {"prompt": "病假有几天？"}}
    body = assert_error(outage.server.call(outage.app_id, new_question), 503, "ModelServiceUnavailable")
    assert "bge-m3" in body["message"] and "503" in body["message"]
    # A question asked before the outage has its vector cached: it is still answered.
    assert outage.server.call(outage.app_id, asked).status_code == 200


def test_an_embedder_that_cannot_be_reached_is_a_503_for_the_sdk(outage: Outage, monkeypatch) -> None:
    outage.stop_embeddings()  # its port now refuses connections
    monkeypatch.setattr(dashscope, "base_http_api_url", outage.server.base_http_api_url)
    response = dashscope.Application.call(app_id=outage.app_id, prompt="年假有几天？", api_key=outage.server.key())
    assert response.status_code == 503, response
    assert response.code == "ModelServiceUnavailable"
    assert "Cannot reach the embedding model 'bge-m3'" in response.message
    assert response.request_id


def test_an_embedder_refusing_the_request_is_a_model_service_error(outage: Outage) -> None:
    outage.embeddings.failing_with = 401
    body = assert_error(outage.server.call(outage.app_id, {"input": {"prompt": "年假"}}), 500, "ModelServiceError")
    assert "refused the request: HTTP 401" in body["message"]
