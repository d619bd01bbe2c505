"""Saving (dedup, update) and recall at the service level."""

from __future__ import annotations

import pytest

from openbailian.errors import MemoryNotFound, NotFound
from openbailian.memory.extract import Fact
from openbailian.memory.store import MemoryStore
from openbailian.services import memory as memory_service


async def new_memory(runtime, workspace="ws1"):
    async with runtime.db.transaction() as session:
        return (await memory_service.create_memory(session, workspace, "test")).id


async def contents(runtime, memory_id):
    async with runtime.db.session() as session:
        return [i.content for i in (await memory_service.list_items(session, memory_id, None)).items]


async def test_save_then_recall(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    changes = await store.remember(memory_id, [Fact("用户饮食偏好：面食", "饮食偏好"), Fact("用户住在北京", "居住城市")])
    assert [c.action for c in changes] == ["added", "added"]
    recalled = await store.recall(memory_id, "饮食偏好是什么")
    assert recalled[0].content == "用户饮食偏好：面食"


async def test_a_newer_fact_on_the_same_subject_replaces_the_old_one(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    await store.remember(memory_id, [Fact("用户饮食偏好：面食", "饮食偏好")])
    changes = await store.remember(memory_id, [Fact("用户饮食偏好：米饭", "饮食偏好")])
    assert [c.action for c in changes] == ["updated"]
    assert await contents(runtime, memory_id) == ["用户饮食偏好：米饭"]


async def test_the_same_fact_twice_is_stored_once(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    await store.remember(memory_id, [Fact("用户喜欢游泳")])
    changes = await store.remember(memory_id, [Fact("用户喜欢游泳")])
    assert [c.action for c in changes] == ["unchanged"]
    # Two facts of one subject in one batch: the later wins, no pile-up.
    await store.remember(memory_id, [Fact("用户职业：教师", "职业"), Fact("用户职业：医生", "职业")])
    assert sorted(await contents(runtime, memory_id)) == sorted(["用户喜欢游泳", "用户职业：医生"])


async def test_memories_are_isolated(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    first, second = await new_memory(runtime), await new_memory(runtime)
    await store.remember(first, [Fact("用户喜欢猫")])
    assert await store.recall(second, "猫") == []
    assert [r.content for r in await store.recall(first, "猫")] == ["用户喜欢猫"]


async def test_unknown_and_foreign_memory_ids_are_clear_errors(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime, "ws1")
    with pytest.raises(MemoryNotFound):
        await store.check("nope", "ws1")
    # another workspace's memory is indistinguishable from a missing one
    with pytest.raises(MemoryNotFound, match=f"^Memory '{memory_id}' does not exist$"):
        await store.check(memory_id, "ws2")
    await store.check(memory_id, "ws1")


async def test_recall_is_bounded_in_tokens_and_count(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    distinct = ["".join(chr(0x4E00 + i * 97 + k * 7) for k in range(40)) for i in range(20)]
    changes = await store.remember(memory_id, [Fact(f"爱好{text}") for text in distinct])
    assert [c.action for c in changes] == ["added"] * 20
    recalled = await store.recall(memory_id, "爱好", limit=8, budget_tokens=120)
    assert 0 < len(recalled) <= 2
    assert len(await store.recall(memory_id, "爱好", limit=3, budget_tokens=10_000)) == 3


async def test_manual_edits_are_seen_by_recall(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    await store.remember(memory_id, [Fact("用户喜欢猫")])
    assert [r.content for r in await store.recall(memory_id, "宠物")] == ["用户喜欢猫"]  # cached now
    async with runtime.db.transaction() as session:
        (item,) = (await memory_service.list_items(session, memory_id, "ws1")).items
        await memory_service.update_item(session, memory_id, item.id, "ws1", "用户喜欢狗")
        added = await memory_service.add_item(session, memory_id, "ws1", "用户住在杭州")
    assert sorted(r.content for r in await store.recall(memory_id, "x")) == ["用户住在杭州", "用户喜欢狗"]
    async with runtime.db.transaction() as session:
        await memory_service.delete_item(session, memory_id, added.id, "ws1")
    assert [r.content for r in await store.recall(memory_id, "x")] == ["用户喜欢狗"]


async def test_item_ops_check_the_item_belongs_to_the_memory(runtime):
    first, second = await new_memory(runtime), await new_memory(runtime)
    async with runtime.db.transaction() as session:
        item = await memory_service.add_item(session, first, "ws1", "用户饮食偏好：面食")
        assert item.subject == "饮食偏好"
        with pytest.raises(NotFound):
            await memory_service.get_item(session, second, item.id, "ws1")


async def test_deleting_a_memory_deletes_its_items_only(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    first, second = await new_memory(runtime), await new_memory(runtime)
    await store.remember(first, [Fact("用户喜欢猫")])
    await store.remember(second, [Fact("用户喜欢狗")])
    async with runtime.db.transaction() as session:
        await memory_service.delete_memory(session, first, "ws1")
    with pytest.raises(MemoryNotFound):
        await store.recall(first, "猫")
    assert await contents(runtime, second) == ["用户喜欢狗"]
    # Saving into a memory deleted meanwhile is a no-op, not a crash.
    assert await store.remember(first, [Fact("x")]) == []
