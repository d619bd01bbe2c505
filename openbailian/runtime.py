"""The composition root: settings → database, models, engine, features.

Shared by the server and the CLI. Each feature plugs in here: a context
source (knowledge, session files, memory), a turn observer (memory
extraction), the tool runner (plugins), and background workers (ingestion,
expiry) that the server starts and stops.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from openbailian.config import Settings
from openbailian.engine.augment import ContextSource, ToolRunner, TurnObserver
from openbailian.engine.run import Engine
from openbailian.engine.sessions import SessionStore
from openbailian.knowledge.source import KnowledgeSource
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.memory import MemoryObserver, MemorySource, MemoryStore
from openbailian.providers.registry import ModelRegistry
from openbailian.services.apps import DatabaseAppLoader
from openbailian.storage.db import Database, migrate
from openbailian.tools.runner import PluginToolRunner

__all__ = ["Runtime", "BackgroundWorker"]


class BackgroundWorker(Protocol):
    """Work the server runs beside requests (ingestion queue, expiry sweeper)."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    db: Database
    models: ModelRegistry
    engine: Engine
    workers: list[BackgroundWorker] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        models = ModelRegistry(settings)
        context_sources: list[ContextSource] = []
        observers: list[TurnObserver] = []
        tool_runner: ToolRunner | None = None
        workers: list[BackgroundWorker] = []
        # Features register their context sources, observers, tools and workers here.
        knowledge = KnowledgeSystem.from_settings(db, settings)
        context_sources.append(KnowledgeSource(db, knowledge.retriever))
        workers.append(knowledge)
        from openbailian.files.source import SessionFileSource
        from openbailian.files.system import SessionFiles

        files = SessionFiles.build(settings, db, knowledge)
        context_sources.append(SessionFileSource(files))
        workers.append(files)
        memory_store = MemoryStore(db, knowledge.embedder)
        context_sources.append(MemorySource(memory_store))
        observers.append(MemoryObserver(memory_store, models, settings))
        tool_runner = PluginToolRunner(db, settings)
        engine = Engine(
            DatabaseAppLoader(db),
            SessionStore(db),
            models,
            context_sources=context_sources,
            observers=observers,
            tool_runner=tool_runner,
            max_history_turns=settings.max_history_turns,
            max_output_tokens=settings.max_output_tokens,
            model_timeout=settings.model_timeout_seconds,
        )
        return cls(settings=settings, db=db, models=models, engine=engine, workers=workers)

    async def migrate(self) -> None:
        await asyncio.to_thread(migrate, self.settings.resolved_database_url)

    async def start(self) -> None:
        """What the server does before it takes requests."""
        await self.migrate()
        for name in self.settings.preload_models:
            await self.models.get(name)
        for worker in self.workers:
            await worker.start()

    async def aclose(self) -> None:
        for worker in reversed(self.workers):
            await worker.aclose()
        await self.engine.drain()
        await self.models.aclose()
        await self.db.dispose()
