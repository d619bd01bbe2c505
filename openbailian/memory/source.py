"""Long-term memory in an app call: recall before the answer, save after it.

Decision on the app switch: a call's ``memory_id`` is always checked (unknown →
``MemoryNotFound`` 404, another workspace's too — exactly like an unknown one —
both before anything streams), but it is only *used* — recalled and saved to —
when the published app has ``memory_enabled`` on, as in Bailian where the
long-term memory switch must be turned on and the app published.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

from openbailian.config import Settings
from openbailian.engine.augment import Augmentation, CallContext, data_block
from openbailian.memory.extract import Fact, extraction_messages, parse_facts
from openbailian.memory.store import MemoryStore
from openbailian.providers.base import GenerationOptions
from openbailian.providers.registry import ModelRegistry

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
    """The ``TurnObserver``: extracts the key facts of a finished turn and saves them.

    The extraction model is ``settings.memory_model`` (``OPENBAILIAN_MEMORY_MODEL``)
    when set, else the app's own model. Failures are logged, never raised: the
    answer has already been sent.
    """

    def __init__(
        self,
        store: MemoryStore,
        models: ModelRegistry,
        settings: Settings,
        *,
        timeout: float = 120.0,
        max_tokens: int = 400,
    ) -> None:
        self._store = store
        self._models = models
        self._settings = settings
        self._timeout = timeout
        self._max_tokens = max_tokens

    async def turn_finished(self, context: CallContext, user_text: str, answer: str) -> None:
        if not context.call.memory_id or not context.config.memory_enabled or not user_text.strip():
            return
        try:
            facts = await asyncio.wait_for(self.extract(context, user_text, answer), self._timeout)
            changes = await self._store.remember(context.call.memory_id, facts)
            logger.info(
                "memory %s: %s", context.call.memory_id, ", ".join(c.action for c in changes) or "nothing new"
            )
        except Exception:
            logger.exception("memory extraction failed for request %s", context.call.request_id)

    async def extract(self, context: CallContext, user_text: str, answer: str) -> list[Fact]:
        assert context.call.memory_id
        known = await self._store.recall(context.call.memory_id, user_text, limit=10, budget_tokens=600)
        provider = await self._models.get(self._settings.memory_model or context.config.model)
        messages = extraction_messages(user_text, answer, [k.content for k in known])
        options = GenerationOptions(temperature=0.0, max_tokens=self._max_tokens)
        parts: list[str] = []
        async with aclosing(provider.stream(messages, options)) as chunks:
            async for chunk in chunks:
                parts.append(chunk.text)
        return parse_facts("".join(parts))
