"""The composition root: settings → database, models, engine. Shared by the server and the CLI."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from openbailian.config import Settings
from openbailian.engine.run import Engine
from openbailian.engine.sessions import SessionStore
from openbailian.providers.registry import ModelRegistry
from openbailian.services.apps import DatabaseAppLoader
from openbailian.storage.db import Database, migrate

__all__ = ["Runtime"]


@dataclass
class Runtime:
    settings: Settings
    db: Database
    models: ModelRegistry
    engine: Engine

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        models = ModelRegistry(settings)
        engine = Engine(
            DatabaseAppLoader(db),
            SessionStore(db),
            models,
            max_history_turns=settings.max_history_turns,
            max_output_tokens=settings.max_output_tokens,
        )
        return cls(settings=settings, db=db, models=models, engine=engine)

    async def migrate(self) -> None:
        await asyncio.to_thread(migrate, self.settings.resolved_database_url)

    async def aclose(self) -> None:
        await self.models.aclose()
        await self.db.dispose()
