"""Apps: a draft config that is edited, and published snapshots that calls use.

The use cases take and return domain objects (:class:`AppRecord`, :class:`AppPage`,
:class:`~openbailian.engine.app_config.AppConfig`); each face (``/manage/v1``, the CLI,
the OpenAPI agents) renders its own shape. ``workspace_id=None`` (the local CLI) skips
the workspace check.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.engine.app_config import AppConfig
from openbailian.engine.call import AppStamp
from openbailian.engine.run import AppLoader
from openbailian.errors import (
    AppNotFound,
    AppNotPublished,
    InvalidParameter,
    NotFound,
    invalid_input,
)
from openbailian.providers.registry import ModelRegistry
from openbailian.services.knowledge import get_base
from openbailian.services.lookup import check_owner, get_in_workspace
from openbailian.services.plugins import check_plugin_ids
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.db import Database, Prepared
from openbailian.storage.models import App, AppVersion

__all__ = [
    "AppRecord",
    "AppPage",
    "MAX_NAME_CHARS",
    "create_app",
    "update_app",
    "publish_app",
    "get_app",
    "list_apps",
    "list_published_apps",
    "PublishedVersion",
    "list_versions",
    "roll_back",
    "delete_app",
    "parse_config",
    "revise_config",
    "DatabaseAppLoader",
    "stamp_of",
]

MAX_NAME_CHARS = 200


@dataclass(frozen=True, slots=True)
class AppRecord:
    """An app: its draft, its published snapshot (None until published), and the
    settings a face accepted that have no equivalent here (``unmapped``: kept as sent)."""

    id: str
    workspace_id: str
    name: str
    draft: AppConfig
    published: AppConfig | None
    published_version: int
    unmapped: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AppPage:
    """One page of a listing (``page`` counts from 1)."""

    items: list[AppRecord]
    page: int
    page_size: int
    total: int


def parse_config(data: Mapping[str, Any]) -> AppConfig:
    try:
        return AppConfig.model_validate(dict(data))
    except ValidationError as error:
        raise invalid_input(error, "app config") from None


def revise_config(config: AppConfig, changes: Mapping[str, Any]) -> AppConfig:
    """``config`` with some of its fields changed (validated as a whole)."""
    return parse_config({**config.model_dump(mode="json"), **changes})


def _record(app: App) -> AppRecord:
    return AppRecord(
        id=app.id,
        workspace_id=app.workspace_id,
        name=app.name,
        draft=AppConfig.model_validate(app.draft),
        published=None if app.published is None else AppConfig.model_validate(app.published),
        published_version=app.published_version,
        unmapped=dict(app.unmapped_settings or {}),
        created_at=app.created_at,
        updated_at=app.updated_at,
    )


def _check_name(name: str) -> None:
    if not name.strip():
        raise InvalidParameter("An app needs a name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidParameter(f"An app name has at most {MAX_NAME_CHARS} characters")


async def create_app(
    session: AsyncSession,
    *,
    workspace_id: str,
    name: str,
    config: AppConfig,
    models: ModelRegistry,
    publish: bool = True,
    unmapped: Mapping[str, Any] | None = None,
) -> AppRecord:
    _check_name(name)
    models.check(config.model)
    await ensure_workspace(session, workspace_id)
    await check_links(session, workspace_id, config)
    draft = config.model_dump(mode="json")
    app = App(
        id=uuid.uuid4().hex, workspace_id=workspace_id, name=name, draft=draft,
        unmapped_settings=dict(unmapped or {}),
    )
    if publish:
        app.published, app.published_version = draft, 1
    session.add(app)
    await session.flush()
    if publish:
        session.add(AppVersion(app_id=app.id, version=1, config=draft))
        await session.flush()
    return _record(app)


async def check_links(session: AsyncSession, workspace_id: str, config: AppConfig) -> None:
    """Knowledge bases and plugins an app links must exist in the app's workspace."""
    for base_id in config.knowledge_base_ids:
        await get_base(session, base_id, workspace_id)
    await check_plugin_ids(session, workspace_id, config.plugin_ids)


async def _row(session: AsyncSession, app_id: str, workspace_id: str | None) -> App:
    return await get_in_workspace(
        session, App, app_id, workspace_id, missing=AppNotFound, label="App"
    )


async def get_app(session: AsyncSession, app_id: str, workspace_id: str | None = None) -> AppRecord:
    return _record(await _row(session, app_id, workspace_id))


async def list_apps(session: AsyncSession, workspace_id: str | None = None) -> list[AppRecord]:
    query = select(App).order_by(App.created_at, App.id)
    if workspace_id is not None:
        query = query.where(App.workspace_id == workspace_id)
    return [_record(app) for app in await session.scalars(query)]


async def list_published_apps(
    session: AsyncSession, workspace_id: str, *, page: int = 1, page_size: int = 30
) -> AppPage:
    """The workspace's published apps, oldest first, one page of them."""
    if page < 1 or page_size < 1:
        raise InvalidParameter("page and page size start at 1")
    where = (App.workspace_id == workspace_id, App.published_version > 0)
    total = await session.scalar(select(func.count()).select_from(App).where(*where)) or 0
    query = (
        select(App).where(*where).order_by(App.created_at, App.id)
        .offset((page - 1) * page_size).limit(page_size)
    )
    items = [_record(app) for app in await session.scalars(query)]
    return AppPage(items=items, page=page, page_size=page_size, total=total)


async def update_app(
    session: AsyncSession,
    app_id: str,
    workspace_id: str | None,
    models: ModelRegistry,
    *,
    changes: Mapping[str, Any] | None = None,
    name: str | None = None,
    unmapped: Mapping[str, Any] | None = None,
    publish: bool = False,
) -> AppRecord:
    """Change the draft (``changes``: AppConfig fields), the name and the unmapped
    settings (replaced when given); calls keep the published version until it is
    published (``publish=True`` does both in one transaction)."""
    app = await _row(session, app_id, workspace_id)
    config = revise_config(AppConfig.model_validate(app.draft), changes or {})
    models.check(config.model)
    await check_links(session, app.workspace_id, config)
    app.draft = config.model_dump(mode="json")
    if name is not None:
        _check_name(name)
        app.name = name
    if unmapped is not None:
        app.unmapped_settings = dict(unmapped)
    await session.flush()
    if publish:
        await _publish(session, app)
    return _record(app)


async def publish_app(session: AsyncSession, app_id: str, workspace_id: str | None = None) -> AppRecord:
    app = await _row(session, app_id, workspace_id)
    await _publish(session, app)
    return _record(app)


async def _publish(session: AsyncSession, app: App) -> None:
    app.published = dict(app.draft)
    # Incremented in SQL: two processes publishing at once must not both write the same
    # version, as processes reuse a parsed config while the version stays the same.
    app.published_version = App.published_version + 1
    await session.flush()
    await session.refresh(app, ["published_version", "updated_at"])
    session.add(AppVersion(app_id=app.id, version=app.published_version, config=dict(app.published)))
    await session.flush()


@dataclass(frozen=True, slots=True)
class PublishedVersion:
    version: int
    config: AppConfig
    created_at: datetime | None


async def list_versions(session: AsyncSession, app_id: str, workspace_id: str | None = None) -> list[PublishedVersion]:
    """The app's published versions, newest first (versions published before they were
    kept, by migration 0010a, are not listed)."""
    await _row(session, app_id, workspace_id)
    query = select(AppVersion).where(AppVersion.app_id == app_id).order_by(AppVersion.version.desc())
    return [
        PublishedVersion(version=v.version, config=AppConfig.model_validate(v.config), created_at=v.created_at)
        for v in await session.scalars(query)
    ]


async def roll_back(
    session: AsyncSession, app_id: str, workspace_id: str | None, version: int, models: ModelRegistry
) -> AppRecord:
    """Publish an earlier version's config again (as a new version; the draft becomes it too)."""
    app = await _row(session, app_id, workspace_id)
    kept = await session.get(AppVersion, (app.id, version))
    if kept is None:
        raise NotFound(f"App '{app_id}' has no published version {version}")
    config = AppConfig.model_validate(kept.config)
    models.check(config.model)
    await check_links(session, app.workspace_id, config)  # a base or plugin may be gone since
    app.draft = dict(kept.config)
    await session.flush()
    await _publish(session, app)
    return _record(app)


async def delete_app(session: AsyncSession, app_id: str, workspace_id: str | None = None) -> None:
    await session.delete(await _row(session, app_id, workspace_id))
    await session.flush()


def stamp_of(workspace_id: str | None, version: int | None) -> AppStamp:
    """The stamp of an app row read as (workspace_id, published_version); Nones: no row."""
    return AppStamp(workspace_id=workspace_id, published_version=version or 0)


_STAMP = Prepared(select(App.workspace_id, App.published_version).where(App.id == bindparam("app_id")))


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
        row = await self._db.read(lambda conn: _STAMP.first(conn, {"app_id": app_id}), quick=True)
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
        row = await self._db.read(lambda conn: conn.execute(query).first(), quick=True)
        stamp = stamp_of(*(row[:2] if row else (None, None)))
        self._check(app_id, workspace_id, stamp)
        assert row is not None and row.published is not None
        config = AppConfig.model_validate(row.published)
        if len(self._configs) >= self.MAX_CACHED:
            self._configs.clear()
        self._configs[app_id] = (stamp.published_version, config)
        return config
