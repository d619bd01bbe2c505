"""Knowledge search inside PostgreSQL (pgvector + BM25 over a tsvector): chosen on PostgreSQL
with the extension, its rows written at ingest and removed with the chunks, keyword
ranking equal to the in-process BM25, served to a process that never ingested, rebuilt
by ``openbailian search reindex``, and the in-process index everywhere else.

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
from openbailian.storage.knowledge_models import KnowledgeBase
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


def _search_rows(settings: Settings) -> list[tuple]:
    return _sql(
        settings,
        "SELECT chunk_id, base_id, document_id, dim, embedding::text, tsv::text, length FROM knowledge_chunk_search ORDER BY chunk_id",
    )


@on_postgres
async def test_reindex_writes_in_sql_the_rows_ingestion_writes(knowledge, settings, corpus):
    """``search reindex`` makes the rows on the server (tsvector and length from the stored
    terms, vectors copied in binary): the same rows, lexemes and statistics as ingestion,
    whatever characters the terms hold."""
    await _ingested_base(knowledge, corpus["phones"])
    words_id = await _text_base(knowledge, {"plain.md": "价格 价格 tail", "other.md": "zephyr price"})
    # Terms jieba would not make, stored as they could be: quotes, backslashes, an over-long one.
    awkward = "it's a\\b O'Brien's \\\\ 价格 价格 价格 " + "x" * 3000 + " tail"
    chunk_id = _sql(settings, f"SELECT min(id) FROM knowledge_chunks WHERE base_id = '{words_id}'")[0][0]
    url = settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE knowledge_chunks SET terms = %s WHERE id = %s", (awkward, chunk_id))
        connection.execute("DELETE FROM knowledge_chunk_search WHERE chunk_id = %s", (chunk_id,))
        connection.execute(
            "INSERT INTO knowledge_chunk_search (chunk_id, base_id, document_id, dim, embedding, tsv, length) "
            "SELECT id, base_id, document_id, 0, NULL, CAST(%s AS tsvector), %s FROM knowledge_chunks WHERE id = %s",
            (tsvector_literal(awkward), len(awkward.split()), chunk_id),
        )
        connection.execute("UPDATE knowledge_chunks SET embedding = NULL WHERE id = %s", (chunk_id,))
    written = _search_rows(settings)
    _sql(settings, "TRUNCATE knowledge_chunk_search, knowledge_term_stats, knowledge_search_stats")
    result = await _reindex(settings)
    assert _search_rows(settings) == written and sum(result["bases"].values()) == len(written)
    assert "'it''s':1" in dict((r[0], r[5]) for r in written)[chunk_id]
    assert _statistics_agree_with_the_rows(settings, words_id) == 2


@on_postgres
async def test_the_dense_query_walks_the_hnsw_index(knowledge, settings, corpus):
    await _ingested_base(knowledge, corpus["hr"])
    pg = await knowledge.retriever.index.prepare()  # chooses pgvector, starts building the index of this dimension
    assert await pg.index_built()
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
    _sql(settings, "DROP TABLE knowledge_chunk_search, memory_item_vectors; DROP EXTENSION vector")
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
    _sql(
        settings,
        "DROP TABLE knowledge_chunk_search, knowledge_chunk_cells, knowledge_term_stats, knowledge_term_cells, "
        "knowledge_search_stats; DELETE FROM alembic_version WHERE version_num IN ('0015', '0017', '0017a', '0023', '0024')",
    )
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


async def _text_base(system: KnowledgeSystem, documents: dict[str, str]) -> str:
    """A base of small markdown documents (one chunk each), ingested."""
    async with system.db.transaction() as session:
        base = await kb.create_base(session, workspace_id="ws1", name="words", kind="unstructured")
    await kb.upload_documents(
        system.db, base, [(name, body.encode()) for name, body in documents.items()], store=system.store,
        max_bytes=system.settings.knowledge_max_file_bytes, limits=SafetyLimits.of(system.settings),
    )
    await system.worker.drain()
    return base.id


def _statistics_agree_with_the_rows(settings: Settings, base_id: str) -> int:
    """The stored BM25 statistics are those of the base's rows now; their chunk count."""
    stored = _sql(settings, f"SELECT term, df FROM knowledge_term_stats WHERE base_id = '{base_id}' ORDER BY term")
    counted = _sql(
        settings,
        f"SELECT e.lexeme, count(*) FROM knowledge_chunk_search s, unnest(s.tsv) e "
        f"WHERE s.base_id = '{base_id}' GROUP BY 1 ORDER BY 1",
    )
    assert stored == counted
    # The cells: per term, tf class and length class (as the server classes them), the chunks there.
    cells = _sql(
        settings,
        f"SELECT term, tf_class, length_class, df FROM knowledge_term_cells WHERE base_id = '{base_id}' ORDER BY 1, 2, 3",
    )
    classed = _sql(
        settings,
        f"SELECT e.lexeme, openbailian_tf_class(cardinality(e.positions)), openbailian_length_class(s.length), count(*) "
        f"FROM knowledge_chunk_search s, unnest(s.tsv) e WHERE s.base_id = '{base_id}' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    assert cells == classed
    totals = _sql(settings, f"SELECT chunks, total_length FROM knowledge_search_stats WHERE base_id = '{base_id}'")
    terms = _sql(settings, f"SELECT terms FROM knowledge_chunks WHERE base_id = '{base_id}'")
    expected = [(len(terms), sum(len(t.split()) for (t,) in terms))] if terms else []
    assert totals == expected
    return len(terms)


# Ten documents: "apple" in all (many times in most), "zircon" in one, "pear" in three.
WORDS = {
    **{f"apples{i}.md": "apple " * (3 + i) + f"pear banana{i}" * (i < 3) + f" filler{i} " * 4 for i in range(9)},
    "zircon.md": "apple zircon quartz filler",
}


@on_postgres
async def test_ingestion_writes_the_search_rows_and_deleting_removes_them(knowledge, settings, corpus):
    index_id = await _ingested_base(knowledge, corpus["phones"], corpus["hr"])
    # Written by the ingesting worker, before any search ran anywhere.
    chunks = _sql(settings, f"SELECT count(*) FROM knowledge_chunks WHERE base_id = '{index_id}'")[0][0]
    rows = _sql(settings, f"SELECT count(*) FROM knowledge_chunk_search WHERE base_id = '{index_id}'")[0][0]
    assert rows == chunks > 0
    assert _statistics_agree_with_the_rows(settings, index_id) == chunks
    async with knowledge.db.session() as session:
        documents = await kb.list_documents(session, index_id, "ws1")
    phones = [d for d in documents if d.name.endswith(".docx")][0]
    async with knowledge.db.transaction() as session:
        await kb.delete_document(session, phones.id, "ws1", knowledge.store)
    left = _sql(settings, f"SELECT count(*) FROM knowledge_chunk_search WHERE document_id = '{phones.id}'")
    assert left[0][0] == 0
    assert 0 < _statistics_agree_with_the_rows(settings, index_id) < chunks
    hits = await knowledge.retriever.search([index_id], "Zephyr Z9")
    assert phones.id not in {h.document_id for h in hits}
    # Re-ingesting a document replaces its rows (no duplicates, statistics still right).
    hr = [d for d in documents if d.id != phones.id][0]
    async with knowledge.db.transaction() as session:
        await kb.reindex_document(session, hr.id, "ws1")
    await knowledge.worker.drain()
    assert _statistics_agree_with_the_rows(settings, index_id) == hr.chunks
    async with knowledge.db.transaction() as session:
        await kb.delete_base(session, index_id, "ws1", knowledge.store)
    assert _sql(settings, f"SELECT count(*) FROM knowledge_chunk_search WHERE base_id = '{index_id}'")[0][0] == 0
    assert _sql(settings, f"SELECT count(*) FROM knowledge_term_stats WHERE base_id = '{index_id}'")[0][0] == 0
    assert _statistics_agree_with_the_rows(settings, index_id) == 0


@on_postgres
async def test_two_workers_ingesting_one_base_at_once_keep_its_statistics_right(knowledge, settings):
    """Each worker stores its documents' chunks and search rows in its own transactions; the
    statistics triggers of one base take turns (an advisory lock), never deadlock, never lose a count."""
    async with knowledge.db.transaction() as session:
        base = await kb.create_base(session, workspace_id="ws1", name="shared", kind="unstructured")
    documents = [(f"note{i}.md", f"shared word{i % 3} common{i} ".encode() * (i + 1)) for i in range(12)]
    await kb.upload_documents(
        knowledge.db, base, documents, store=knowledge.store,
        max_bytes=settings.knowledge_max_file_bytes, limits=SafetyLimits.of(settings),
    )
    db = Database(settings.resolved_database_url)
    other = KnowledgeSystem.from_settings(db, settings, embedder=knowledge.embedder)
    try:
        await asyncio.gather(knowledge.worker.drain(), other.worker.drain())
    finally:
        await other.aclose()
        await db.dispose()
    async with knowledge.db.session() as session:
        statuses = {d.status for d in await kb.list_documents(session, base.id, "ws1")}
    assert statuses == {"FILE_IS_READY"}
    assert _statistics_agree_with_the_rows(settings, base.id) == len(documents)
    assert _sql(settings, f"SELECT df FROM knowledge_term_stats WHERE base_id = '{base.id}' AND term = 'shared'") == [(12,)]


@on_postgres
@pytest.mark.parametrize("first_pass", [2000, 1], ids=["one-pass", "maxscore"])
async def test_keyword_ranking_in_postgresql_is_the_in_process_bm25(knowledge, settings, monkeypatch, first_pass):
    import openbailian.knowledge.search_pg as search_pg

    monkeypatch.setattr(search_pg, "_FIRST_PASS_POSTINGS", first_pass)  # 1: every query takes two passes
    index_id = await _text_base(knowledge, WORDS)
    async with knowledge.db.session() as session:
        version = (await session.get(KnowledgeBase, index_id)).version
    pg = await knowledge.retriever.index.prepare()
    assert pg.name == "pgvector"
    in_process = MemoryIndex(knowledge.db, knowledge.embedder.dim)
    vector = knowledge.embedder.embed_query("apple")
    for query in (["apple", "zircon"], ["apple"], ["pear", "apple", "quartz"], ["banana1", "apple", "nothing"]):
        ours = await pg.search(index_id, version, ChunkMask(), vector, query, 5)
        theirs = await in_process.search(index_id, version, ChunkMask(), vector, query, 5)
        assert ours.keyword == theirs.keyword, query
    # A rare term beats a common one: the only chunk with "zircon" ranks first although
    # every other chunk holds "apple" more often.
    ranked = (await pg.search(index_id, version, ChunkMask(), vector, ["apple", "zircon"], 10)).keyword
    chunk_texts = dict(_sql(settings, f"SELECT id, text FROM knowledge_chunks WHERE base_id = '{index_id}'"))
    assert "zircon" in chunk_texts[ranked[0]] and len(ranked) == len(WORDS)
    await in_process.aclose()


@on_postgres
async def test_a_rare_query_term_ranks_its_document_first_over_http(knowledge, settings):
    index_id = await _text_base(knowledge, WORDS)
    server = LiveServer(settings).start()
    try:
        chunks = _retrieve(server, index_id, "apple zircon")
        assert "zircon" in chunks[0]["text"]
        assert server.runtime.knowledge.retriever.index.name == "pgvector"
    finally:
        server.stop()


@on_postgres
async def test_migration_0017_brings_a_0015_database_up_to_date(knowledge, settings, corpus):
    index_id = await _ingested_base(knowledge, corpus["phones"], corpus["hr"])
    chunks = _sql(settings, f"SELECT count(*) FROM knowledge_chunks WHERE base_id = '{index_id}'")[0][0]
    # As 0015 left it: no statistics, lengths or triggers, a foreign key, the sync table, and
    # the rows of some chunks not yet copied in by a search.
    _sql(
        settings,
        "DROP FUNCTION openbailian_search_count() CASCADE",
        "DROP FUNCTION openbailian_search_unchunk() CASCADE",
        "DROP FUNCTION openbailian_search_uncells() CASCADE",  # 0023's
        "DROP TABLE knowledge_chunk_cells, knowledge_term_stats, knowledge_term_cells, knowledge_search_stats",
        "ALTER TABLE knowledge_chunk_search DROP COLUMN length",
        "ALTER TABLE knowledge_chunk_search ADD CONSTRAINT knowledge_chunk_search_chunk_id_fkey "
        "FOREIGN KEY (chunk_id) REFERENCES knowledge_chunks(id) ON DELETE CASCADE",
        "CREATE TABLE knowledge_search_sync (base_id varchar(32) PRIMARY KEY, version integer NOT NULL)",
        f"DELETE FROM knowledge_chunk_search WHERE chunk_id IN "
        f"(SELECT id FROM knowledge_chunks WHERE base_id = '{index_id}' ORDER BY id DESC LIMIT 3)",
        "UPDATE alembic_version SET version_num = '0015' WHERE version_num = '0017a'",  # 0017a follows 0017
        "DELETE FROM alembic_version WHERE version_num = '0024'",  # and 0023, 0024 too
    )
    migrate(settings.resolved_database_url)
    assert _statistics_agree_with_the_rows(settings, index_id) == chunks
    assert _sql(settings, f"SELECT count(*) FROM knowledge_chunk_search WHERE base_id = '{index_id}'")[0][0] == chunks
    assert _sql(settings, "SELECT count(*) FROM knowledge_chunk_search WHERE length = 0")[0][0] == 0
    assert _sql(settings, "SELECT to_regclass('knowledge_search_sync')")[0][0] is None
    server = LiveServer(settings).start()
    try:
        assert _about(_retrieve(server, index_id, "How many days of annual leave?")[0], "annual leave")
    finally:
        server.stop()


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
    assert tsvector_literal("手机 zephyr it's a\\b") == "'手机':1 'zephyr':1 'it''s':1 'a\\\\b':1"
    # Positions 1..tf: the term frequencies BM25 needs (PostgreSQL keeps up to 256).
    assert tsvector_literal("b a b b") == "'b':1,2,3 'a':1"
    assert tsvector_literal("x " * 300).count(",") == 255
    assert tsquery_literal(["价格", "z9", "价格"]) == "'z9' | '价格'"
    assert tsquery_literal([]) == ""


def _hnsw_index(settings: Settings, dim: int) -> list[tuple]:
    return _sql(
        settings,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        f"WHERE c.relname = 'knowledge_chunk_search_hnsw_{dim}'",
    )


@on_postgres
async def test_a_server_searching_while_its_hnsw_index_is_built_elsewhere_answers_by_an_exact_scan(
    knowledge, settings, corpus
):
    """Another process is building the index (it holds the builders' lock, the index is not
    there yet): a server starts and answers without waiting for that build; a server that
    finds no index and no builder builds it in the background, and answers meanwhile."""
    index_id = await _ingested_base(knowledge, corpus["phones"], corpus["hr"])
    dim = knowledge.embedder.dim
    _sql(settings, f"DROP INDEX IF EXISTS knowledge_chunk_search_hnsw_{dim}")
    url = settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as builder:
        builder.execute("SELECT pg_advisory_lock(hashtext('openbailian-search:index'))")
        server = LiveServer(settings).start()  # its start never waits on the lock
        try:
            chunks = _retrieve(server, index_id, "Zephyr Z9 价格")
            assert chunks and _about(chunks[0], "Zephyr")
            assert _hnsw_index(settings, dim) == []  # answered by an exact scan: no index yet
        finally:
            server.stop()
    server = LiveServer(settings).start()  # no builder now: this one builds it, concurrently
    try:
        pg = server.runtime.knowledge.retriever.index.chosen
        chunks = _retrieve(server, index_id, "How many days of annual leave?")
        assert _about(chunks[0], "annual leave")
        built = asyncio.run_coroutine_threadsafe(pg.index_built(), server.loop).result(timeout=120)
        assert built and _hnsw_index(settings, dim) == [(True,)]
        assert _about(_retrieve(server, index_id, "Zephyr Z9 价格")[0], "Zephyr")
    finally:
        server.stop()


@on_postgres
async def test_a_search_while_a_rebuild_holds_the_table_is_a_clear_503_not_a_hang(knowledge, settings, corpus):
    """``search reindex`` empties and refills the rows in one transaction (its TRUNCATE locks
    the table until it commits): a search then answers 503 Index.SearchBusy after a few
    seconds instead of hanging for the whole rebuild, and answers again once it is done."""
    index_id = await _ingested_base(knowledge, corpus["phones"])
    server = LiveServer(settings).start()
    url = settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        assert _retrieve(server, index_id, "Zephyr Z9 价格")
        with psycopg.connect(url) as rebuild:
            rebuild.execute("TRUNCATE knowledge_chunk_search, knowledge_term_stats, knowledge_search_stats")
            response = server.http.post(
                "/manage/v1/knowledge/retrieve", json={"query": "Zephyr Z9 价格", "index_ids": [index_id]},
                headers=server.auth(),
            )
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["code"] == "Index.SearchBusy" and "reindex" in body["message"] and body["request_id"]
            rebuild.rollback()
        chunks = _retrieve(server, index_id, "Zephyr Z9 价格")
        assert chunks and _about(chunks[0], "Zephyr")
    finally:
        server.stop()


@on_postgres
@pytest.mark.parametrize(
    ("first_pass", "query_keys"), [(2000, 300), (1, 300), (1, 3)], ids=["default", "two-passes", "small-queries"]
)
async def test_keyword_top_k_on_a_zipf_base_has_exactly_the_in_process_bm25_scores(
    knowledge, settings, monkeypatch, first_pass, query_keys
):
    """Chunks of varied lengths over a Zipf vocabulary (common terms in most chunks, tf past
    the tf classes' exact range): PostgreSQL's top k holds exactly the scores of the in-process
    BM25's, for queries of rare and of only common terms, however few chunks it scores —
    through the threshold query, with terms left out of it, or through the greedy passes."""
    import numpy as np

    import openbailian.knowledge.search_pg as search_pg
    from openbailian.knowledge.bm25 import BM25Index

    monkeypatch.setattr(search_pg, "_FIRST_PASS_POSTINGS", first_pass)
    monkeypatch.setattr(search_pg, "_MAX_QUERY_KEYS", query_keys)
    rng = np.random.default_rng(14)
    documents = [
        [f"t{r}" for r in np.minimum(rng.zipf(1.3, size=int(rng.integers(3, 160))), 400) - 1] for _ in range(1500)
    ]
    url = settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO knowledge_chunk_search (chunk_id, base_id, document_id, dim, embedding, tsv, length) "
                "VALUES (%s, 'zipf', 'd', 0, NULL, CAST(%s AS tsvector), %s)",
                [(i + 1, tsvector_literal(" ".join(words)), len(words)) for i, words in enumerate(documents)],
            )
    reference = BM25Index()
    reference.add(documents)
    pg = search_pg.PgSearch(knowledge.db, knowledge.embedder.dim)
    queries = [[f"t{r}" for r in np.minimum(rng.zipf(1.3, size=int(rng.integers(1, 7))), 400) - 1] for _ in range(40)]
    queries += [["t0"], ["t0", "t1", "t2"], ["t399", "t0"]]
    for query in queries:
        every = {row + 1: score for row, score in reference.search(query, len(documents))}
        for k in (5, 40):
            found = (await pg.search("zipf", 1, ChunkMask(), np.zeros(0, np.float32), query, k)).keyword
            expected = sorted(score for _, score in reference.search(query, k))
            assert len(found) == len(expected), query
            assert np.allclose(sorted(every[c] for c in found), expected, rtol=1e-5), (query, k)


async def test_a_question_still_in_the_model_gets_the_candidates_of_its_vector(knowledge):
    """The index searches the keyword half while the vector is still being computed (a future):
    the same candidates as with the vector known, on either index (SQLite's in-process one, or
    pgvector in the PostgreSQL run); a model that fails fails the search with its error."""
    index_id = await _text_base(knowledge, WORDS)
    async with knowledge.db.session() as session:
        version = (await session.get(KnowledgeBase, index_id)).version
    index = knowledge.retriever.index
    terms = ["apple", "zircon"]
    vector = knowledge.embedder.embed_query("apple zircon")
    known = await index.search(index_id, version, ChunkMask(), vector, terms, 5)
    assert known.dense and known.keyword

    loop = asyncio.get_running_loop()
    pending: asyncio.Future = loop.create_future()
    search = asyncio.ensure_future(index.search(index_id, version, ChunkMask(), pending, terms, 5))
    loop.call_later(0.05, pending.set_result, vector)  # the model's answer, later
    assert await search == known

    failing: asyncio.Future = loop.create_future()
    search = asyncio.ensure_future(index.search(index_id, version, ChunkMask(), failing, terms, 5))
    loop.call_later(0.05, failing.set_exception, RuntimeError("the model failed"))
    with pytest.raises(RuntimeError, match="the model failed"):
        await search
    assert await index.search(index_id, version, ChunkMask(), vector, terms, 5) == known  # nothing held
