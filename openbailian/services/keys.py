"""API keys: ``sk-`` + 32 hex digits, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import InvalidApiKey, NotFound
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.models import ApiKey, utcnow

__all__ = ["CreatedKey", "create_key", "hash_key", "list_keys", "revoke_key", "resolve_key"]


@dataclass(frozen=True)
class CreatedKey:
    id: str
    api_key: str
    workspace_id: str


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


async def resolve_key(session: AsyncSession, api_key: str) -> ApiKey:
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(api_key)))
    if row is None or row.revoked_at is not None:
        raise InvalidApiKey("Invalid API-key provided.")
    return row
