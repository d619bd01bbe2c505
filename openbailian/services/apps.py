"""Apps: a draft config that is edited, and published snapshots that calls use."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.engine.app_config import AppConfig
from openbailian.engine.run import AppLoader
from openbailian.errors import (
    AppNotFound,
    AppNotPublished,
    InvalidParameter,
)
from openbailian.providers.registry import ModelRegistry
from openbailian.services.knowledge import get_base
from openbailian.services.lookup import get_in_workspace
from openbailian.services.plugins import check_plugin_ids
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.db import Database
from openbailian.storage.models import App

__all__ = [
    "create_app",
    "update_app",
    "publish_app",
    "get_app",
    "list_apps",
    "delete_app",
    "app_view",
    "parse_config",
    "DatabaseAppLoader",
]


def parse_config(data: dict[str, Any]) -> AppConfig:
    try:
        return AppConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "app"
        raise InvalidParameter(f"Invalid app config at '{where}': {first['msg']}") from None


async def create_app(
    session: AsyncSession,
    *,
    workspace_id: str,
    name: str,
    config: AppConfig,
    models: ModelRegistry,
    publish: bool = True,
) -> App:
    models.check(config.model)
    await ensure_workspace(session, workspace_id)
    await check_links(session, workspace_id, config)
    draft = config.model_dump(mode="json")
    app = App(id=uuid.uuid4().hex, workspace_id=workspace_id, name=name, draft=draft)
    if publish:
        app.published, app.published_version = draft, 1
    session.add(app)
    await session.flush()
    return app


async def check_links(session: AsyncSession, workspace_id: str, config: AppConfig) -> None:
    """Knowledge bases and plugins an app links must exist in the app's workspace."""
    for base_id in config.knowledge_base_ids:
        await get_base(session, base_id, workspace_id)
    await check_plugin_ids(session, workspace_id, config.plugin_ids)


async def get_app(session: AsyncSession, app_id: str, workspace_id: str | None = None) -> App:
    return await get_in_workspace(
        session, App, app_id, workspace_id, missing=AppNotFound, label="App"
    )


async def list_apps(session: AsyncSession, workspace_id: str | None = None) -> list[App]:
    query = select(App).order_by(App.created_at)
    if workspace_id is not None:
        query = query.where(App.workspace_id == workspace_id)
    return list(await session.scalars(query))


async def update_app(
    session: AsyncSession,
    app: App,
    changes: dict[str, Any],
    models: ModelRegistry,
    *,
    name: str | None = None,
) -> App:
    """Change the draft; calls keep using the published version until ``publish_app``."""
    config = parse_config({**app.draft, **changes})
    models.check(config.model)
    await check_links(session, app.workspace_id, config)
    app.draft = config.model_dump(mode="json")
    if name:
        app.name = name
    await session.flush()
    return app


async def publish_app(session: AsyncSession, app: App) -> App:
    app.published = dict(app.draft)
    app.published_version += 1
    await session.flush()
    return app


async def delete_app(session: AsyncSession, app: App) -> None:
    await session.delete(app)
    await session.flush()


def app_view(app: App) -> dict[str, Any]:
    return {
        "app_id": app.id,
        "name": app.name,
        "workspace": app.workspace_id,
        "draft": app.draft,
        "published": app.published,
        "published_version": app.published_version,
        "created_at": app.created_at.isoformat() if app.created_at else None,
    }


class DatabaseAppLoader(AppLoader):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def published(self, app_id: str, workspace_id: str) -> AppConfig:
        async with self._db.session() as session:
            app = await get_app(session, app_id, workspace_id)
        if app.published is None:
            raise AppNotPublished(f"App '{app_id}' has no published version; publish it first")
        return AppConfig.model_validate(app.published)
