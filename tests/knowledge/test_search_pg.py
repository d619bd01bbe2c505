"""Knowledge search inside PostgreSQL (pgvector + full-text search): chosen on PostgreSQL
with the extension, served to a process that never ingested, rebuilt by
``openbailian search reindex``, and the in-process index everywhere else.

The PostgreSQL tests run when ``OPENBAILIAN_TEST_POSTGRES_URL`` names a server with
pgvector (``.ci/run`` starts one); the rest of tests/knowledge runs there too, through
the same port."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys

import psycopg
import pytest
from typer.testing import CliRunner

from openbailian.cli import app
from openbailian.config import Settings
from openbailian.files.safety import SafetyLimits
from openbailian.knowledge.index import MemoryIndex
from openbailian.knowledge.search import ChunkMask
from openbailian.knowledge.search_pg import (
    SearchUnavailable,
    dense_sql,
    filters,
    search_index_for,
    tsquery_literal,
    tsvector_literal,
)
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.services import knowledge as kb
from openbailian.storage.db import Database, migrate
from tests.support import POSTGRES_URL, LiveServer, make_settings

on_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="needs OPENBAILIAN_TEST_POSTGRES_URL")


def _sql(settings: Settings, *statements: str) -> list[tuple]:
    """The last statement's rows."""
    url = settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


async def _ingested_base(system: KnowledgeSystem, *paths) -> str:
    async with system.db.transaction() as session:
        base = await kb.create_base(session, workspace_id="ws1", name="kb", kind="unstructured")
    await kb.upload_documents(
        system.db, base, [(path.name, path.read_bytes()) for path in paths], store=system.store,
        max_bytes=system.settings.knowledge_max_file_bytes, limits=SafetyLimits.of(system.settings),
    )
    await system.worker.drain()
    return base.id


def _retrieve(server: LiveServer, index_id: str, query: str) -> list[dict]:
    response = server.http.post(
        "/manage/v1/knowledge/retrieve", json={"query": query, "index_ids": [index_id]}, headers=server.auth()
    )
    assert response.status_code == 200, response.text
    return response.json()["chunks"]


def _about(chunk: dict, word: str) -> bool:
    return word.lower() in (chunk["title"] + chunk["text"]).lower()


async def _reindex(settings: Settings) -> dict:
    """``openbailian search reindex --json`` in a process of its own."""
    env = {**os.environ, "OPENBAILIAN_HOME": str(settings.home), "OPENBAILIAN_DATABASE_URL": settings.resolved_database_url}
    command = [sys.executable, "-c", "from openbailian.cli import main; main()", "search", "reindex", "--json"]
    result = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@on_postgres
async def test_a_process_that_never_ingested_answers_from_postgresql_and_reindex_rebuilds(
    knowledge, settings, corpus
):
    index_id = await _ingested_base(knowledge, corpus["phones"], corpus["hr"])
    stored = _sql(settings, f"SELECT count(*) FROM knowledge_chunks WHERE base_id = '{index_id}'")[0][0]
    server = LiveServer(settings).start()  # another runtime: its own engine, nothing ingested
    try:
        chunks = _retrieve(server, index_id, "Zephyr Z9 价格")
        assert chunks and _about(chunks[0], "Zephyr")
        assert server.runtime.knowledge.retriever.index.name == "pgvector"
        rows = _sql(settings, f"SELECT count(*) FROM knowledge_chunk_search WHERE base_id = '{index_id}'")
        assert rows[0][0] == stored > 0

        # The API process keeps no copy: with the rows gone it finds nothing ...
        _sql(settings, "DELETE FROM knowledge_chunk_search")
        assert _retrieve(server, index_id, "Zephyr Z9 价格") == []
        # ... until `openbailian search reindex` rebuilds them from the stored chunks.
        result = await _reindex(settings)
        assert result["bases"] == {index_id: stored} and result["dim"] == knowledge.embedder.dim
        assert _about(_retrieve(server, index_id, "Zephyr Z9 价格")[0], "Zephyr")
        assert _about(_retrieve(server, index_id, "How many days of annual leave?")[0], "annual leave")
    finally:
        server.stop()
    indexes = {name for (name,) in _sql(settings, "SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunk_search'")}
    assert f"knowledge_chunk_search_hnsw_{knowledge.embedder.dim}" in indexes


@on_postgres
async def test_deleting_a_document_removes_its_vectors_in_the_database(knowledge, settings, corpus):
    index_id = await _ingested_base(knowledge, corpus["phones"], corpus["hr"])
    assert await knowledge.retriever.search([index_id], "Zephyr")
    async with knowledge.db.session() as session:
        phones = [d for d in await kb.list_documents(session, index_id, "ws1") if d.name.endswith(".docx")][0]
    async with knowledge.db.transaction() as session:
        await kb.delete_document(session, phones.id, "ws1", knowledge.store)
    left = _sql(settings, f"SELECT count(*) FROM knowledge_chunk_search WHERE document_id = '{phones.id}'")
    assert left[0][0] == 0
    hits = await knowledge.retriever.search([index_id], "Zephyr Z9")
    assert phones.id not in {h.document_id for h in hits}


@on_postgres
async def test_the_dense_query_walks_the_hnsw_index(knowledge, settings, corpus):
    await _ingested_base(knowledge, corpus["hr"])
    await knowledge.retriever.index.prepare()  # chooses pgvector, makes the index of this dimension
    dim = knowledge.embedder.dim
    where, params = filters("b1", ChunkMask(document_ids=frozenset({"d1"})))
    sql = dense_sql(dim, where)
    for name, value in {**params, "q": "'[" + ",".join(["0.1"] * dim) + "]'", "k": "10"}.items():
        value = "ARRAY['d1']" if name == "document_ids" else value if name in {"q", "k"} else f"'{value}'"
        sql = sql.replace(f":{name}", value)
    plan = _sql(settings, "SET enable_seqscan = off", "SET enable_indexscan = on", f"EXPLAIN {sql}")
    assert any(f"knowledge_chunk_search_hnsw_{dim}" in line for (line,) in plan), plan


@on_postgres
async def test_without_the_extension_search_falls_back_in_process_or_refuses(knowledge, settings, corpus, caplog):
    index_id = await _ingested_base(knowledge, corpus["phones"])
    _sql(settings, "DROP TABLE knowledge_chunk_search; DROP EXTENSION vector")
    db = Database(settings.resolved_database_url)
    try:
        fallback = KnowledgeSystem.from_settings(db, settings, embedder=knowledge.embedder)
        with caplog.at_level(logging.WARNING, logger="openbailian.knowledge"):
            hits = await fallback.retriever.search([index_id], "Zephyr Z9")
        assert hits and "Zephyr" in hits[0].title + hits[0].text
        assert fallback.retriever.index.name == "memory"
        assert "pgvector extension is not installed" in caplog.text
        required = settings.model_copy(update={"knowledge_search": "pgvector"})
        strict = KnowledgeSystem.from_settings(db, required, embedder=knowledge.embedder)
        with pytest.raises(SearchUnavailable, match="pgvector extension is not installed"):
            await strict.start()
        await fallback.aclose()
    finally:
        await db.dispose()


@on_postgres
async def test_migration_0015_moves_an_existing_base_into_pgvector(knowledge, settings, corpus):
    index_id = await _ingested_base(knowledge, corpus["phones"])
    # As before 0015: no search tables, the revision not applied.
    _sql(settings, "DROP TABLE knowledge_chunk_search, knowledge_search_sync; DELETE FROM alembic_version WHERE version_num = '0015'")
    migrate(settings.resolved_database_url)
    moved = _sql(settings, f"SELECT count(*), min(dim) FROM knowledge_chunk_search WHERE base_id = '{index_id}'")
    assert moved[0][0] > 0 and moved[0][1] == knowledge.embedder.dim
    db = Database(settings.resolved_database_url)
    try:
        fresh = KnowledgeSystem.from_settings(db, settings, embedder=knowledge.embedder)
        hits = await fresh.retriever.search([index_id], "Zephyr Z9")
        assert fresh.retriever.index.name == "pgvector" and "Zephyr" in hits[0].title + hits[0].text
        await fresh.aclose()
    finally:
        await db.dispose()


def test_sqlite_keeps_the_in_process_index(tmp_path):
    settings = make_settings(tmp_path / "home")
    db = Database(settings.resolved_database_url)
    assert isinstance(search_index_for(db, 384, settings), MemoryIndex)
    required = make_settings(tmp_path / "home", knowledge_search="pgvector")
    with pytest.raises(SearchUnavailable, match="needs a PostgreSQL database"):
        search_index_for(db, 384, required)


def test_reindex_on_sqlite_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBAILIAN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENBAILIAN_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["search", "reindex"])
    assert result.exit_code == 1
    assert "SearchUnavailable" in result.output and "SQLite" in result.output


def test_terms_become_exact_lexemes_whatever_they_contain():
    assert tsvector_literal("手机 zephyr it's a\\b") == "'手机':1 'zephyr':2 'it''s':3 'a\\\\b':4"
    assert tsquery_literal(["价格", "z9", "价格"]) == "'z9' | '价格'"
    assert tsquery_literal([]) == ""
