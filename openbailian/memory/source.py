"""Long-term memory in an app call: recall before the answer, save after it.

Decision on the app switch: a call's ``memory_id`` is always checked (unknown →
``MemoryNotFound`` 404, another workspace's too — exactly like an unknown one —
both before anything streams), but it is only *used* — recalled and saved to —
when the published app has ``memory_enabled`` on, as in Bailian where the
long-term memory switch must be turned on and the app published.
"""

from __future__ import annotations

import logging

from openbailian.engine.augment import Augmentation, CallContext, data_block
from openbailian.memory.queue import ExtractionQueue
from openbailian.memory.store import MemoryStore

__all__ = ["MemorySource", "MemoryObserver"]

logger = logging.getLogger("openbailian.memory")


class MemorySource:
    """The ``ContextSource``: recalled items enter the context as a ``user_memory`` block."""

    def __init__(self, store: MemoryStore, *, limit: int = 8, budget_tokens: int = 400) -> None:
        self._store = store
        self._limit = limit
        self._budget = budget_tokens

    async def gather(self, context: CallContext) -> Augmentation:
        if not context.call.memory_id:
            return Augmentation()
        await self._store.check(context.call.memory_id, context.call.workspace_id)
        if not context.config.memory_enabled:
            return Augmentation()
        items = await self._store.recall(
            context.call.memory_id, context.query, limit=self._limit, budget_tokens=self._budget
        )
        if not items:
            return Augmentation()
        body = "What is known about the user (long-term memory):\n" + "\n".join(
            f"- {item.content}" for item in items
        )
        return Augmentation(context_blocks=[data_block("user_memory", body)])


class MemoryObserver:
    """The ``TurnObserver``: queues the extraction of a finished turn's key facts
    (``memory/queue.py``), to be run by whichever process runs background work.

    The extraction model is ``settings.memory_model`` (``OPENBAILIAN_MEMORY_MODEL``)
    when set, else the app's own model. Failures are logged, never raised: the
    answer has already been sent.
    """

    def __init__(self, queue: ExtractionQueue) -> None:
        self._queue = queue

    async def turn_finished(self, context: CallContext, user_text: str, answer: str) -> None:
        if not context.call.memory_id or not context.config.memory_enabled or not user_text.strip():
            return
        try:
            await self._queue.enqueue(
                context.call.memory_id, context.config.model, user_text, answer, context.call.request_id
            )
        except Exception:
            logger.exception("queueing the memory extraction failed for request %s", context.call.request_id)
