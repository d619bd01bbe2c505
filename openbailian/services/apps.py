"""Apps: a draft config that is edited, and published snapshots that calls use."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.engine.app_config import AppConfig
from openbailian.engine.run import AppLoader, AppStamp
from openbailian.errors import (
    AppNotFound,
    AppNotPublished,
    InvalidParameter,
)
from openbailian.providers.registry import ModelRegistry
from openbailian.services.knowledge import get_base
from openbailian.services.lookup import check_owner, get_in_workspace
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
    "stamp_of",
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
    # Incremented in SQL: two processes publishing at once must not both write the same
    # version, as processes reuse a parsed config while the version stays the same.
    app.published_version = App.published_version + 1
    await session.flush()
    await session.refresh(app, ["published_version"])
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


def stamp_of(workspace_id: str | None, version: int | None) -> AppStamp:
    """The stamp of an app row read as (workspace_id, published_version); Nones: no row."""
    return AppStamp(workspace_id=workspace_id, published_version=version or 0)


class DatabaseAppLoader(AppLoader):
    """Published configs, parsed once per process and reused while the version is unchanged.

    Every call still reads the app's row (owner and version, by primary key; the API reads
    it with the key in one query), so an update, publish or delete made by any process is
    seen by the very next call. Safe because app ids are never reused and a published
    snapshot is only ever written together with a new, higher version.
    """

    MAX_CACHED = 10_000

    def __init__(self, db: Database) -> None:
        self._db = db
        self._configs: dict[str, tuple[int, AppConfig]] = {}

    async def published(
        self, app_id: str, workspace_id: str, stamp: AppStamp | None = None
    ) -> AppConfig:
        if stamp is None:
            stamp = await self._read_stamp(app_id)
        self._check(app_id, workspace_id, stamp)
        cached = self._configs.get(app_id)
        if cached is not None and cached[0] == stamp.published_version:
            return cached[1]
        return await self._load(app_id, workspace_id)

    async def _read_stamp(self, app_id: str) -> AppStamp:
        query = select(App.workspace_id, App.published_version).where(App.id == app_id)
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return stamp_of(*(row or (None, None)))

    def _check(self, app_id: str, workspace_id: str, stamp: AppStamp) -> None:
        if stamp.workspace_id is None:
            self._configs.pop(app_id, None)
        check_owner(stamp.workspace_id, app_id, workspace_id, missing=AppNotFound, label="App")
        if not stamp.published_version:
            raise AppNotPublished(f"App '{app_id}' has no published version; publish it first")

    async def _load(self, app_id: str, workspace_id: str) -> AppConfig:
        # Snapshot and version come from one read, so they always belong together (a
        # publish since the stamp was read only makes this config newer than it).
        query = select(App.workspace_id, App.published_version, App.published).where(
            App.id == app_id
        )
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        stamp = stamp_of(*(row[:2] if row else (None, None)))
        self._check(app_id, workspace_id, stamp)
        assert row is not None and row.published is not None
        config = AppConfig.model_validate(row.published)
        if len(self._configs) >= self.MAX_CACHED:
            self._configs.clear()
        self._configs[app_id] = (stamp.published_version, config)
        return config
