"""Upgrading a PostgreSQL search schema to migration 0023's keyword cells never rewrites the
search table: from 0017 (no cells) and from the first form of 0023 (a generated ``cells``
column, brought over by 0024), the base answers exactly as one built fresh, and the search
table, its HNSW index and its primary key keep their files (``relfilenode``: a rewrite gives
a table or index a new one). The downgrade goes back to 0017's layout.

Runs when ``OPENBAILIAN_TEST_POSTGRES_URL`` names a server with pgvector (``.ci/run``)."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from alembic import command

from openbailian.config import Settings
from openbailian.files.safety import SafetyLimits
from openbailian.knowledge.bm25 import query_terms
from openbailian.knowledge.search import ChunkMask
from openbailian.knowledge.search_pg import PgSearch
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.services import knowledge as kb
from openbailian.storage.db import alembic_config, migrate
from tests.support import POSTGRES_URL

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs OPENBAILIAN_TEST_POSTGRES_URL")

QUERIES = ["Zephyr Z9 价格", "How many days of annual leave?", "百炼 手机 电池 续航", "报销 出差 审批", "产品 介绍"]

# The first form of migration 0023 (main at faacd3f, `search_pg.SCHEMA` and `add_cells`): the
# cells as a stored generated column of the search table under a GIN index, and their counts.
OLD_0023 = [
    """CREATE OR REPLACE FUNCTION openbailian_search_cells(base_id text, tsv tsvector, length integer) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT coalesce(array_to_tsvector(array_agg(base_id || ' ' || e.lexeme || ' ' ||
        openbailian_tf_class(cardinality(e.positions)) || ' ' || openbailian_length_class(length))), ''::tsvector)
    FROM unnest(tsv) e WHERE octet_length(e.lexeme) <= 2000 $$""",
    "ALTER TABLE knowledge_chunk_search ADD COLUMN IF NOT EXISTS cells tsvector "
    "GENERATED ALWAYS AS (openbailian_search_cells(base_id, tsv, length)) STORED",
    "CREATE INDEX IF NOT EXISTS knowledge_chunk_search_cells ON knowledge_chunk_search USING gin (cells)",
    """CREATE TABLE IF NOT EXISTS knowledge_term_cells (
        base_id varchar(32) NOT NULL, term text NOT NULL, tf_class smallint NOT NULL, length_class smallint NOT NULL,
        df integer NOT NULL, PRIMARY KEY (base_id, term, tf_class, length_class)
    )""",
    """CREATE OR REPLACE FUNCTION openbailian_search_uncount() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN TRUNCATE knowledge_term_cells; RETURN NULL; END $$""",
    "CREATE TRIGGER knowledge_term_stats_emptied AFTER TRUNCATE ON knowledge_term_stats "
    "FOR EACH STATEMENT EXECUTE FUNCTION openbailian_search_uncount()",
    "INSERT INTO knowledge_term_cells (base_id, term, tf_class, length_class, df) "
    "SELECT s.base_id, e.lexeme, openbailian_tf_class(cardinality(e.positions)), openbailian_length_class(s.length), count(*) "
    "FROM knowledge_chunk_search s, unnest(s.tsv) e WHERE octet_length(e.lexeme) <= 2000 GROUP BY 1, 2, 3, 4",
    "DELETE FROM alembic_version WHERE version_num = '0017'",  # the downgrade left it as a head
    "INSERT INTO alembic_version (version_num) VALUES ('0023')",
]


def _sql(settings: Settings, *statements: str) -> list[tuple]:
    """The last statement's rows, all in one transaction."""
    url = settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        for statement in statements:
            cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


async def _ingested_base(system: KnowledgeSystem, corpus: dict) -> str:
    async with system.db.transaction() as session:
        base = await kb.create_base(session, workspace_id="ws1", name="kb", kind="unstructured")
    paths = [corpus["phones"], corpus["hr"]]
    await kb.upload_documents(
        system.db, base, [(path.name, path.read_bytes()) for path in paths], store=system.store,
        max_bytes=system.settings.knowledge_max_file_bytes, limits=SafetyLimits.of(system.settings),
    )
    await system.worker.drain()
    return base.id


async def _answers(system: KnowledgeSystem, base_id: str) -> list:
    """Each query's keyword top 10 (chunk, through the search port) and hybrid hits (chunk, score)."""
    pg = PgSearch(system.db, system.embedder.dim)
    found = []
    for query in QUERIES:
        keyword = await pg.search(base_id, 1, ChunkMask(), np.zeros(0, np.float32), list(query_terms(query)), 10)
        hits = await system.retriever.search([base_id], query, top_k=5)
        found.append((keyword.keyword, [(hit.chunk_id, round(hit.score, 5)) for hit in hits]))
    assert any(keyword for keyword, _ in found) and all(hits for _, hits in found)
    return found


def _files(settings: Settings, dim: int) -> dict[str, int]:
    """The relfilenode of the search table, its primary key and its HNSW index."""
    names = ["knowledge_chunk_search", "knowledge_chunk_search_pkey", f"knowledge_chunk_search_hnsw_{dim}"]
    rows = _sql(settings, "SELECT relname, relfilenode FROM pg_class WHERE relname = ANY(%s)" % _array(names))
    assert len(rows) == len(names)
    return dict(rows)


def _array(names: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{name}'" for name in names) + "]"


def _indexes(settings: Settings) -> set[str]:
    return {
        name for (name,) in _sql(
            settings, "SELECT indexname FROM pg_indexes WHERE tablename IN ('knowledge_chunk_search', 'knowledge_chunk_cells')"
        )
    }


def _columns(settings: Settings) -> set[str]:
    return {
        name for (name,) in _sql(
            settings, "SELECT column_name FROM information_schema.columns WHERE table_name = 'knowledge_chunk_search'"
        )
    }


def _cells_are_the_rows(settings: Settings) -> int:
    """Every search row has exactly the cells the trigger computes from its terms; their count."""
    stored = _sql(settings, "SELECT chunk_id, cells::text FROM knowledge_chunk_cells ORDER BY chunk_id")
    computed = _sql(
        settings,
        "SELECT chunk_id, openbailian_search_cells(base_id, tsv, length)::text FROM knowledge_chunk_search ORDER BY chunk_id",
    )
    assert stored == computed
    counts = _sql(settings, "SELECT base_id, term, tf_class, length_class, df FROM knowledge_term_cells ORDER BY 1, 2, 3, 4")
    recounted = _sql(
        settings,
        "SELECT s.base_id, e.lexeme, openbailian_tf_class(cardinality(e.positions))::smallint, "
        "openbailian_length_class(s.length)::smallint, count(*)::integer "
        "FROM knowledge_chunk_search s, unnest(s.tsv) e GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    assert counts == recounted
    return len(stored)


def _down_to_0017(settings: Settings) -> None:
    """The real downgrade of 0024 then 0023: 0017's layout, the tsv index back, the cells gone."""
    config = alembic_config(settings.resolved_database_url)
    command.downgrade(config, "0024-1")
    assert "knowledge_chunk_search_tsv" in _indexes(settings)
    command.downgrade(config, "0023-1")
    assert _sql(settings, "SELECT to_regclass('knowledge_chunk_cells'), to_regclass('knowledge_term_cells')") == [(None, None)]
    assert "cells" not in _columns(settings)


async def test_an_upgrade_from_0017_rewrites_nothing_and_answers_as_a_fresh_base(knowledge, settings, corpus):
    base_id = await _ingested_base(knowledge, corpus)
    fresh = await _answers(knowledge, base_id)
    files = _files(settings, knowledge.embedder.dim)
    chunks = _cells_are_the_rows(settings)

    _down_to_0017(settings)
    assert _files(settings, knowledge.embedder.dim) == files  # nor does the downgrade rewrite
    migrate(settings.resolved_database_url)

    assert _files(settings, knowledge.embedder.dim) == files
    assert _cells_are_the_rows(settings) == chunks > 0
    indexes = _indexes(settings)
    assert "knowledge_chunk_cells_gin" in indexes and "knowledge_chunk_search_tsv" not in indexes
    assert await _answers(knowledge, base_id) == fresh


async def test_a_base_at_the_first_form_of_0023_is_moved_by_0024_without_a_rewrite(knowledge, settings, corpus):
    base_id = await _ingested_base(knowledge, corpus)
    fresh = await _answers(knowledge, base_id)
    chunks = _cells_are_the_rows(settings)
    _down_to_0017(settings)
    _sql(settings, *OLD_0023)  # as main's 0023 left a database before 0024
    assert "cells" in _columns(settings) and "knowledge_chunk_search_cells" in _indexes(settings)
    files = _files(settings, knowledge.embedder.dim)

    migrate(settings.resolved_database_url)  # 0024 only: 0023 is recorded as applied

    assert _sql(settings, "SELECT version_num FROM alembic_version WHERE version_num IN ('0023', '0024')") == [("0024",)]
    assert _files(settings, knowledge.embedder.dim) == files
    assert "cells" not in _columns(settings)
    indexes = _indexes(settings)
    assert "knowledge_chunk_search_cells" not in indexes and "knowledge_chunk_search_tsv" not in indexes
    assert "knowledge_chunk_cells_gin" in indexes
    assert _cells_are_the_rows(settings) == chunks > 0
    assert await _answers(knowledge, base_id) == fresh

    # Ingestion and deletion keep the moved cells in step with the rows.
    async with knowledge.db.session() as session:
        documents = await kb.list_documents(session, base_id, "ws1")
    async with knowledge.db.transaction() as session:
        await kb.delete_document(session, documents[0].id, "ws1", knowledge.store)
    assert 0 < _cells_are_the_rows(settings) < chunks
