"""Knowledge bases on an OpenAI-compatible /embeddings endpoint instead of the bundled model."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from openbailian.knowledge.embed import embedder_from_settings
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.storage.db import Database, migrate
from tests.knowledge.test_knowledge_pipeline import _add, _base, _search, _status
from tests.support import serve_in_thread

DIM = 16


def _vector(text: str) -> list[float]:
    """Bag of character trigrams hashed into DIM buckets: similar texts, similar vectors."""
    vector = np.zeros(DIM, dtype=np.float32)
    for i in range(max(1, len(text) - 2)):
        vector[hashlib.md5(text[i : i + 3].encode()).digest()[0] % DIM] += 1.0
    return vector.tolist()


@pytest.fixture
def embeddings_url():
    calls: list[dict] = []

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        calls.append(body)
        data = [{"index": i, "embedding": _vector(t)} for i, t in enumerate(body["input"])]
        return JSONResponse({"data": data, "model": body["model"]})

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield f"{url}/v1", calls


async def _system(settings, **overrides):
    settings = settings.model_copy(update=overrides)
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    return KnowledgeSystem.from_settings(db, settings, embedder=embedder_from_settings(settings)), db


async def test_documents_are_indexed_and_found_with_a_remote_embedder(settings, corpus, embeddings_url):
    url, calls = embeddings_url
    system, db = await _system(settings, knowledge_embedding_base_url=url, knowledge_embedding_dim=DIM,
                               knowledge_embedding_model="bge-m3")
    try:
        base = await _base(system)
        phones = await _add(system, base, corpus["phones"])
        assert await system.ingestor.ingest(phones.id) == "FILE_IS_READY"
        hits = await _search(system, [base.id], "Zephyr Z9 手机")
        assert hits and hits[0].document_id == phones.id
        assert calls and all(c["model"] == "bge-m3" for c in calls)
    finally:
        await system.aclose()
        await db.dispose()


async def test_a_wrong_dimension_fails_the_document_with_a_clear_reason(settings, corpus, embeddings_url):
    url, _ = embeddings_url
    system, db = await _system(settings, knowledge_embedding_base_url=url, knowledge_embedding_dim=1024)
    try:
        base = await _base(system)
        document = await _add(system, base, corpus["phones"])
        assert await system.ingestor.ingest(document.id) == "INDEX_BUILDING_FAILED"
        failed = await _status(system, document.id)
        assert "OPENBAILIAN_KNOWLEDGE_EMBEDDING_DIM=16" in failed.reason
    finally:
        await system.aclose()
        await db.dispose()
