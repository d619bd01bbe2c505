"""Memories and their items (nodes): the use cases behind the management API and the CLI.

Every change of a memory's items bumps ``Memory.revision`` so recall caches
notice it. Items added or edited here get their embedding lazily, on the next
recall (``openbailian.memory.store``), so these use cases need no embedder.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import (
    InvalidParameter,
    MemoryNotFound,
    NotFound,
)
from openbailian.memory.extract import MAX_FACT_CHARS, guess_subject, normalize_subject
from openbailian.services.lookup import get_in_workspace
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.memory_models import Memory, MemoryItem
from openbailian.storage.models import utcnow

__all__ = [
    "create_memory",
    "get_memory",
    "list_memories",
    "delete_memory",
    "add_item",
    "get_item",
    "list_items",
    "update_item",
    "delete_item",
    "memory_view",
    "item_view",
    "MAX_DESCRIPTION_CHARS",
]

MAX_DESCRIPTION_CHARS = 1000


async def create_memory(session: AsyncSession, workspace_id: str, description: str = "") -> Memory:
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidParameter(f"description is longer than {MAX_DESCRIPTION_CHARS} characters")
    await ensure_workspace(session, workspace_id)
    memory = Memory(id=uuid.uuid4().hex, workspace_id=workspace_id, description=description)
    session.add(memory)
    await session.flush()
    return memory


async def get_memory(session: AsyncSession, memory_id: str, workspace_id: str | None) -> Memory:
    return await get_in_workspace(
        session, Memory, memory_id, workspace_id, missing=MemoryNotFound, label="Memory"
    )


async def list_memories(session: AsyncSession, workspace_id: str | None) -> list[tuple[Memory, int]]:
    """Memories with their item counts, oldest first."""
    counts = (
        select(MemoryItem.memory_id, func.count().label("n"))
        .group_by(MemoryItem.memory_id)
        .subquery()
    )
    query = (
        select(Memory, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.memory_id == Memory.id)
        .order_by(Memory.created_at)
    )
    if workspace_id is not None:
        query = query.where(Memory.workspace_id == workspace_id)
    return [(memory, int(n)) for memory, n in (await session.execute(query)).all()]


async def delete_memory(session: AsyncSession, memory: Memory) -> None:
    await session.execute(delete(MemoryItem).where(MemoryItem.memory_id == memory.id))
    await session.delete(memory)
    await session.flush()


def _content(content: str) -> str:
    if not isinstance(content, str) or not content.strip():
        raise InvalidParameter("content must be a non-empty string")
    content = content.strip()
    if len(content) > MAX_FACT_CHARS:
        raise InvalidParameter(f"content is longer than {MAX_FACT_CHARS} characters")
    return content


def _subject(subject: str | None, content: str) -> str:
    return normalize_subject(subject) if subject else guess_subject(content)


async def add_item(
    session: AsyncSession, memory: Memory, content: str, subject: str | None = None
) -> MemoryItem:
    content = _content(content)
    now = utcnow()
    item = MemoryItem(
        id=uuid.uuid4().hex,
        memory_id=memory.id,
        content=content,
        subject=_subject(subject, content),
        source="manual",
        embedding=None,
        created_at=now,
        updated_at=now,
    )
    session.add(item)
    memory.revision += 1
    await session.flush()
    return item


async def get_item(session: AsyncSession, memory: Memory, item_id: str) -> MemoryItem:
    item = await session.get(MemoryItem, item_id)
    if item is None or item.memory_id != memory.id:
        raise NotFound(f"Memory node '{item_id}' does not exist in memory '{memory.id}'")
    return item


async def list_items(session: AsyncSession, memory: Memory) -> list[MemoryItem]:
    query = (
        select(MemoryItem)
        .where(MemoryItem.memory_id == memory.id)
        .order_by(MemoryItem.created_at, MemoryItem.id)
    )
    return list(await session.scalars(query))


async def update_item(
    session: AsyncSession, memory: Memory, item: MemoryItem, content: str, subject: str | None = None
) -> MemoryItem:
    content = _content(content)
    item.content = content
    item.subject = _subject(subject, content)
    item.source = "manual"
    item.embedding = None
    item.updated_at = utcnow()
    memory.revision += 1
    await session.flush()
    return item


async def delete_item(session: AsyncSession, memory: Memory, item: MemoryItem) -> None:
    await session.delete(item)
    memory.revision += 1
    await session.flush()


def memory_view(memory: Memory, items: int | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "memory_id": memory.id,
        "memoryId": memory.id,
        "workspace": memory.workspace_id,
        "description": memory.description,
        "created_at": memory.created_at.isoformat() if memory.created_at else None,
    }
    if items is not None:
        view["items"] = items
    return view


def item_view(item: MemoryItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "memory_node_id": item.id,
        "memoryNodeId": item.id,
        "memory_id": item.memory_id,
        "content": item.content,
        "subject": item.subject,
        "source": item.source,
        "created_at": item.created_at.isoformat() if item.created_at else None,
        "updated_at": item.updated_at.isoformat() if item.updated_at else None,
    }
