"""Memory extraction as queued work: a finished turn becomes a row of ``memory_extractions``,
and whichever process runs background work (an API process, or ``openbailian worker``)
extracts its facts — so extraction survives the death of the process that answered.

The row is written when the answer has been stored. A process that runs background work
(``OPENBAILIAN_RUN_WORKERS``, on by default) starts on its own rows at once; all of them
also look in the database every ``OPENBAILIAN_WORKER_POLL_SECONDS`` for rows nobody holds
(queued by an API process without workers, or left by a process that died). A row is
claimed with a lease and owner token (``storage/leases.py``), renewed while the model
works, and deleted once the facts are saved. A failing extraction is retried after
``RETRY_AFTER`` up to ``MAX_ATTEMPTS`` claims, then kept as ``failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import timedelta

import anyio
from sqlalchemy import ColumnElement, delete, insert, select, update

from openbailian.config import Settings
from openbailian.errors import MemoryNotFound
from openbailian.memory.extract import Fact, extraction_messages, parse_facts
from openbailian.memory.store import MemoryStore
from openbailian.providers.base import GenerationOptions
from openbailian.providers.registry import ModelRegistry
from openbailian.storage import leases
from openbailian.storage.db import Database
from openbailian.storage.memory_models import MemoryExtraction
from openbailian.storage.models import utcnow

__all__ = ["ExtractionQueue", "MAX_ATTEMPTS"]

logger = logging.getLogger("openbailian.memory")

LEASE = timedelta(seconds=60)
RETRY_AFTER = timedelta(seconds=30)  # a failed attempt's row waits this long before the next claim
MAX_ATTEMPTS = 3
PENDING, FAILED = "pending", "failed"


def _pending() -> ColumnElement[bool]:
    return MemoryExtraction.status == PENDING


@dataclass(eq=False)
class ExtractionQueue:
    """The queue of ``memory_extractions`` and the runner of its jobs (a ``BackgroundWorker``)."""

    db: Database
    store: MemoryStore
    models: ModelRegistry
    settings: Settings
    timeout: float = 120.0
    max_tokens: int = 400
    lease: timedelta = LEASE
    # False in an API process without workers: queued jobs wait in the database for a worker.
    run_here: bool = True
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _poller: asyncio.Task[None] | None = None
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    async def enqueue(self, memory_id: str, model: str, user_text: str, answer: str, request_id: str = "") -> str:
        """Queue one turn's extraction; started here at once when this process runs background work."""
        job_id = uuid.uuid4().hex
        async with self.db.begin() as conn:
            await conn.execute(
                insert(MemoryExtraction).values(
                    id=job_id, memory_id=memory_id, request_id=request_id, model=model,
                    user_text=user_text, answer=answer, status=PENDING, attempts=0, created_at=utcnow(),
                )
            )
        if self.run_here:
            self._schedule(job_id)
        return job_id

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run what is queued and nobody holds, and keep looking for more (idempotent)."""
        if self._poller is None:
            await self.resume()
            self._poller = asyncio.create_task(
                leases.resume_every(self.settings.worker_poll_seconds, self.resume, "memory extractions")
            )

    async def aclose(self) -> None:
        """Stop: jobs in hand are released (shielded) so another process takes them at once."""
        tasks = [*self._tasks.values(), *([self._poller] if self._poller else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._poller = None

    async def drain(self) -> None:
        """Wait for the jobs running in this process (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def resume(self) -> None:
        async with self.db.session() as session:
            ids = list(await session.scalars(
                select(MemoryExtraction.id)
                .where(_pending(), leases.free_at(MemoryExtraction, utcnow()))
                .order_by(MemoryExtraction.created_at)
                .limit(100)
            ))
        for job_id in ids:
            self._schedule(job_id)

    def _schedule(self, job_id: str) -> None:
        if job_id in self._tasks:
            return
        task = asyncio.create_task(self._run_guarded(job_id))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    async def _run_guarded(self, job_id: str) -> None:
        async with self._slots:
            await self.run(job_id)

    # ------------------------------------------------------------ one job

    async def run(self, job_id: str) -> bool:
        """Claim and run one job; False when another process holds it or it is gone or done."""
        held = await leases.claim(self.db, MemoryExtraction, job_id, self.lease, _pending())
        if held is None:
            return False
        renewing = asyncio.create_task(leases.keep_renewing(self.db, held, self.lease))
        try:
            async with self.db.session() as session:
                job = await session.get(MemoryExtraction, job_id)
            if job is None:
                return False
            try:
                facts = await asyncio.wait_for(self.extract(job.memory_id, job.model, job.user_text, job.answer),
                                               self.timeout)
                changes = await self.store.remember(job.memory_id, facts)
            except MemoryNotFound:
                changes = []  # deleted meanwhile: nothing to save into
            except Exception as error:  # noqa: BLE001 - a failing extraction never stops the others
                logger.exception("memory extraction failed for request %s", job.request_id)
                await self._failed(held, job.attempts, f"{type(error).__name__}: {error}")
                return True
            logger.info("memory %s: %s", job.memory_id, ", ".join(c.action for c in changes) or "nothing new")
            async with self.db.begin() as conn:
                await conn.execute(delete(MemoryExtraction).where(held.mine()))
            return True
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await leases.release(self.db, held)
            raise
        finally:
            renewing.cancel()

    async def _failed(self, held: leases.Claim, attempts: int, reason: str) -> None:
        """Retry later (the lease pushed out by ``RETRY_AFTER``), or give up after the last attempt."""
        values: dict[str, object] = {"error": reason[:2000]}
        if attempts >= MAX_ATTEMPTS:
            values.update(status=FAILED, lease_until=None, lease_owner=None)
        else:
            values.update(lease_until=utcnow() + RETRY_AFTER)
        async with self.db.begin() as conn:
            await conn.execute(update(MemoryExtraction).where(held.mine()).values(**values))

    async def extract(self, memory_id: str, model: str, user_text: str, answer: str) -> list[Fact]:
        known = await self.store.recall(memory_id, user_text, limit=10, budget_tokens=600)
        provider = await self.models.get(self.settings.memory_model or model)
        messages = extraction_messages(user_text, answer, [k.content for k in known])
        options = GenerationOptions(temperature=0.0, max_tokens=self.max_tokens)
        parts: list[str] = []
        async with aclosing(provider.stream(messages, options)) as chunks:
            async for chunk in chunks:
                parts.append(chunk.text)
        return parse_facts("".join(parts))

