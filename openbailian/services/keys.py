"""API keys: ``sk-`` + 32 hex digits, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.engine.run import AppStamp
from openbailian.errors import InvalidApiKey, NotFound
from openbailian.services.apps import stamp_of
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.db import Database
from openbailian.storage.models import ApiKey, App, utcnow

__all__ = [
    "CreatedKey",
    "KeyCheck",
    "check_key",
    "create_key",
    "hash_key",
    "list_keys",
    "revoke_key",
]


@dataclass(frozen=True)
class CreatedKey:
    id: str
    api_key: str
    workspace_id: str


@dataclass(frozen=True, slots=True)
class KeyCheck:
    key_id: str
    workspace_id: str
    app: AppStamp | None  # the row of the app the call names, read in the same query


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


async def create_key(session: AsyncSession, workspace_id: str, name: str = "") -> CreatedKey:
    await ensure_workspace(session, workspace_id)
    api_key = "sk-" + secrets.token_hex(16)
    row = ApiKey(
        id=uuid.uuid4().hex,
        workspace_id=workspace_id,
        key_hash=hash_key(api_key),
        display=f"{api_key[:6]}…{api_key[-4:]}",
        name=name,
    )
    session.add(row)
    await session.flush()
    return CreatedKey(id=row.id, api_key=api_key, workspace_id=workspace_id)


async def list_keys(session: AsyncSession, workspace_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    return list(await session.scalars(query))


async def revoke_key(session: AsyncSession, key_id: str) -> None:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key '{key_id}' does not exist")
    row.revoked_at = utcnow()


async def check_key(db: Database, api_key: str, app_id: str | None = None) -> KeyCheck:
    """The key's owner, read on every call so a revoked key is refused at once by every
    process; with ``app_id``, that app's row comes in the same query (one round trip)."""
    query = select(ApiKey.id, ApiKey.workspace_id, ApiKey.revoked_at)
    if app_id is not None:
        query = query.add_columns(
            App.workspace_id.label("app_workspace_id"), App.published_version
        ).outerjoin(App, App.id == app_id)
    query = query.where(ApiKey.key_hash == hash_key(api_key))
    async with db.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.revoked_at is not None:
        raise InvalidApiKey("Invalid API-key provided.")
    app = stamp_of(row.app_workspace_id, row.published_version) if app_id is not None else None
    return KeyCheck(key_id=row.id, workspace_id=row.workspace_id, app=app)
