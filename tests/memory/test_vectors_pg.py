"""Memory recall in PostgreSQL (pgvector): the items' vectors are written with their
embeddings, searched there by any process, cleared by edits and deletes, moved in by
migration 0017a and rebuilt by ``search reindex``; SQLite keeps recalling in process.

The PostgreSQL tests run when ``OPENBAILIAN_TEST_POSTGRES_URL`` names a server with
pgvector (``.ci/run`` starts one); the rest of tests/memory runs there too."""

from __future__ import annotations

import psycopg
import pytest

from openbailian.memory.extract import Fact
from openbailian.memory.store import MemoryStore
from openbailian.services import memory as memory_service
from openbailian.storage.db import Database, migrate
from tests.support import POSTGRES_URL

on_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="needs OPENBAILIAN_TEST_POSTGRES_URL")


def _sql(settings, *statements: str) -> list[tuple]:
    url = settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


async def _memory(runtime) -> str:
    async with runtime.db.transaction() as session:
        return (await memory_service.create_memory(session, "ws1", "test")).id


def _vector_rows(settings, memory_id: str) -> int:
    return _sql(settings, f"SELECT count(*) FROM memory_item_vectors WHERE memory_id = '{memory_id}'")[0][0]


@on_postgres
async def test_a_memory_saved_by_one_process_is_recalled_by_another_from_postgresql(runtime, embedder, settings):
    saver = MemoryStore(runtime.db, embedder)
    memory_id = await _memory(runtime)
    await saver.remember(memory_id, [Fact("用户饮食偏好：面食", "饮食偏好"), Fact("用户住在北京", "居住城市")])
    assert _vector_rows(settings, memory_id) == 2  # written with the embeddings

    other_db = Database(settings.resolved_database_url)  # another process's engine and store
    try:
        other = MemoryStore(other_db, embedder)
        recalled = await other.recall(memory_id, "饮食偏好是什么")
        assert recalled[0].content == "用户饮食偏好：面食"
        assert other._cache == {}  # ranked by PostgreSQL: nothing of the memory held here

        # An edit by hand clears the item's vector; the next recall embeds it again.
        async with runtime.db.transaction() as session:
            items = (await memory_service.list_items(session, memory_id, "ws1")).items
            food = next(i for i in items if "面食" in i.content)
            await memory_service.update_item(session, memory_id, food.id, "ws1", "用户饮食偏好：米饭")
            added = await memory_service.add_item(session, memory_id, "ws1", "用户喜欢游泳")
        assert _vector_rows(settings, memory_id) == 1
        assert [r.content for r in await other.recall(memory_id, "饮食偏好", limit=1)] == ["用户饮食偏好：米饭"]
        assert _vector_rows(settings, memory_id) == 3
        # A fact saved again on the same subject replaces the vector, not adds one.
        await saver.remember(memory_id, [Fact("用户住在杭州", "居住城市")])
        assert _vector_rows(settings, memory_id) == 3
        assert (await other.recall(memory_id, "住在哪里", limit=1))[0].content == "用户住在杭州"
        async with runtime.db.transaction() as session:
            await memory_service.delete_item(session, memory_id, added.id, "ws1")
        assert _vector_rows(settings, memory_id) == 2
        async with runtime.db.transaction() as session:
            await memory_service.delete_memory(session, memory_id, "ws1")
        assert _vector_rows(settings, memory_id) == 0
    finally:
        await other_db.dispose()


@on_postgres
async def test_migration_0017a_moves_existing_embeddings_into_pgvector(runtime, embedder, settings):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await _memory(runtime)
    await store.remember(memory_id, [Fact("用户喜欢猫"), Fact("用户职业：教师", "职业")])
    # As before 0017a: no vector table, the revision not applied.
    _sql(
        settings,
        "DROP TABLE memory_item_vectors",
        "DROP FUNCTION openbailian_memory_vector_clear() CASCADE",
        "DELETE FROM alembic_version WHERE version_num = '0017a'",
    )
    migrate(settings.resolved_database_url)
    assert _vector_rows(settings, memory_id) == 2
    indexes = {name for (name,) in _sql(settings, "SELECT indexname FROM pg_indexes WHERE tablename = 'memory_item_vectors'")}
    assert f"memory_item_vectors_hnsw_{embedder.dim}" in indexes
    fresh = MemoryStore(runtime.db, embedder)
    assert (await fresh.recall(memory_id, "喜欢猫吗", limit=1))[0].content == "用户喜欢猫"


async def test_on_sqlite_recall_ranks_in_process(runtime, embedder, settings):
    if POSTGRES_URL:
        pytest.skip("the SQLite run checks this")
    store = MemoryStore(runtime.db, embedder)
    memory_id = await _memory(runtime)
    await store.remember(memory_id, [Fact("用户喜欢猫")])
    assert [r.content for r in await store.recall(memory_id, "猫")] == ["用户喜欢猫"]
    assert await store._pg_vectors() is None and memory_id in store._cache
