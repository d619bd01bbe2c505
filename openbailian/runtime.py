"""The composition root: settings → database, models, features, engine.

Built once per process (``Runtime.build``), by the server and by the CLI, and
the only place that knows every part. Each feature is a typed field; the engine
gets the features' context sources, turn observers and tool runner here. The
server starts the background workers once (``start``) and closes everything once
(``aclose``); the CLI builds the same runtime but drives the work itself.
Nothing below this module imports it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from openbailian.config import Settings
from openbailian.engine.run import Engine
from openbailian.engine.sessions import SessionStore
from openbailian.files.call_files import CallFileSource
from openbailian.files.formats import MAX_BYTES as MAX_SESSION_FILE_BYTES
from openbailian.files.parsers import session_parsers
from openbailian.files.source import SessionFileSource
from openbailian.files.store import ObjectStore
from openbailian.files.system import SessionFiles
from openbailian.knowledge.documents import SESSION_BASE_KIND, SessionDocuments
from openbailian.knowledge.source import KnowledgeSource
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.memory import ExtractionQueue, MemoryObserver, MemorySource, MemoryStore
from openbailian.providers.registry import ModelRegistry
from openbailian.services.apps import DatabaseAppLoader
from openbailian.storage.buckets import SharedBuckets
from openbailian.storage.db import Database, migrate
from openbailian.storage.private import private_dir
from openbailian.tools.runner import PluginToolRunner

__all__ = ["Runtime", "BackgroundWorker"]


def _shared_object_store(settings: Settings) -> ObjectStore | None:
    """The S3 bucket when one is configured (knowledge and session files share it, under
    different keys); None: each keeps its local-disk default."""
    if not settings.s3_bucket:
        return None
    from openbailian.files.s3 import S3ObjectStore

    return S3ObjectStore.from_settings(settings)


class BackgroundWorker(Protocol):
    """Work the server runs beside requests (ingestion queue, file processing and expiry)."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(eq=False)
class Runtime:
    settings: Settings
    db: Database
    models: ModelRegistry
    knowledge: KnowledgeSystem
    files: SessionFiles
    memory: MemoryStore
    extractions: ExtractionQueue
    tools: PluginToolRunner
    engine: Engine
    buckets: SharedBuckets  # rate limits shared by every process on the database
    sessions: SessionStore
    _started: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        private_dir(settings.home)  # 0700 whatever the umask: transcripts, memory, keys live here
        db = Database(settings.resolved_database_url, pool_size=settings.database_pool_size)
        models = ModelRegistry(settings)
        objects = _shared_object_store(settings)
        # Session files read images, audio and video; their parsers serve their documents only.
        parsers = session_parsers(settings)
        knowledge = KnowledgeSystem.from_settings(db, settings, store=objects, parsers={SESSION_BASE_KIND: parsers})
        # Session files hand their documents to knowledge through this port (files/ports.py).
        documents = SessionDocuments(knowledge, max_bytes=MAX_SESSION_FILE_BYTES)
        files = SessionFiles.build(settings, db, documents, parsers, store=objects)
        files.schedule_here = settings.run_workers
        memory = MemoryStore(db, knowledge.embedder)
        extractions = ExtractionQueue(
            db, memory, models, settings, lease=timedelta(seconds=settings.worker_lease_seconds),
            run_here=settings.run_workers,
        )
        tools = PluginToolRunner(db, settings)
        sessions = SessionStore(db)
        engine = Engine(
            DatabaseAppLoader(db),
            sessions,
            models,
            context_sources=[
                # Files first: a question about them then gets fewer knowledge chunks.
                SessionFileSource(files),
                CallFileSource(files),
                KnowledgeSource(db, knowledge.retriever),
                MemorySource(memory),
            ],
            observers=[MemoryObserver(extractions)],
            tool_runner=tools,
            max_history_turns=settings.max_history_turns,
            max_output_tokens=settings.max_output_tokens,
            model_timeout=settings.model_timeout_seconds,
        )
        return cls(
            settings=settings, db=db, models=models, knowledge=knowledge, files=files,
            memory=memory, extractions=extractions, tools=tools, engine=engine, buckets=SharedBuckets(db),
            sessions=sessions,
        )

    @property
    def workers(self) -> tuple[BackgroundWorker, ...]:
        """Started in this order, closed in the reverse one (files hand work to knowledge)."""
        return (self.knowledge, self.files, self.extractions)

    async def migrate(self) -> None:
        await asyncio.to_thread(migrate, self.settings.resolved_database_url, self.tools.box)

    async def start(self) -> None:
        """What the server does before it takes requests (once; a second call does nothing):
        migrate, preload models, and run the background work unless ``run_workers`` is off."""
        if self._started:
            return
        self._started = True
        await self.migrate()
        for name in self.settings.preload_models:
            await self.models.get(name)
        if self.settings.run_workers:
            await self._start_workers()

    async def start_worker(self) -> None:
        """What ``openbailian worker`` does: migrate and run the background work (no models preloaded)."""
        if self._started:
            return
        self._started = True
        await self.migrate()
        await self._start_workers()

    async def _start_workers(self) -> None:
        for worker in self.workers:
            await worker.start()

    async def aclose(self) -> None:
        """Stop the workers, wait for the engine's background tasks, close models and database (once)."""
        if self._closed:
            return
        self._closed = True
        await self.engine.drain()  # finished turns queue their memory extraction first
        for worker in reversed(self.workers):
            await worker.aclose()
        await self.models.aclose()
        await self.sessions.locks.aclose()
        await self.db.dispose()
