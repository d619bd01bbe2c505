"""Memories and their items (nodes): the use cases behind every face (the OpenAPI
memory family, ``/manage/v1/memories`` and ``openbailian memory``).

They take ids and return domain objects (:class:`MemoryInfo`, :class:`MemoryNode`,
:class:`Page`); each face renders its own shape. ``workspace_id=None`` (the local CLI)
skips the workspace check. Every change of a memory's items bumps ``Memory.revision``
so recall caches notice it. Items added or edited here get their embedding lazily, on
the next recall (``openbailian.memory.store``), so these use cases need no embedder.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import InvalidParameter, MemoryNotFound, NotFound
from openbailian.memory.extract import MAX_FACT_CHARS, guess_subject, normalize_subject
from openbailian.services.lookup import get_in_workspace
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.memory_models import Memory, MemoryItem
from openbailian.storage.models import utcnow

__all__ = [
    "MemoryInfo",
    "MemoryNode",
    "Page",
    "create_memory",
    "get_memory",
    "update_memory",
    "list_memories",
    "delete_memory",
    "add_item",
    "get_item",
    "list_items",
    "update_item",
    "delete_item",
    "MAX_DESCRIPTION_CHARS",
    "MAX_PAGE_SIZE",
]

MAX_DESCRIPTION_CHARS = 1000
MAX_PAGE_SIZE = 100

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MemoryInfo:
    id: str
    workspace_id: str
    description: str
    items: int
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class MemoryNode:
    id: str
    memory_id: str
    content: str
    subject: str
    source: str  # "auto" (extracted from a conversation) or "manual"
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_token`` is None on the last page."""

    items: list[T]
    next_token: str | None
    total: int
    max_results: int | None


def _info(memory: Memory, items: int) -> MemoryInfo:
    return MemoryInfo(memory.id, memory.workspace_id, memory.description, items, memory.created_at)


def _node(item: MemoryItem) -> MemoryNode:
    return MemoryNode(
        item.id, item.memory_id, item.content, item.subject, item.source, item.created_at, item.updated_at
    )


def _description(description: str) -> str:
    if not isinstance(description, str):
        raise InvalidParameter("description must be a string")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidParameter(f"description is longer than {MAX_DESCRIPTION_CHARS} characters")
    return description


def _offset(next_token: str | None) -> int:
    """Page tokens are opaque to callers: the offset of the next row, encoded."""
    if not next_token:
        return 0
    try:
        text = base64.urlsafe_b64decode(next_token.encode("ascii")).decode("ascii")
        kind, _, number = text.partition(":")
        if kind == "o" and number.isdigit():
            return int(number)
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise InvalidParameter("nextToken is not a token this server returned")


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode("ascii")).decode("ascii")


def _page_size(max_results: int | None) -> int | None:
    if max_results is not None and not 1 <= max_results <= MAX_PAGE_SIZE:
        raise InvalidParameter(f"maxResults must be between 1 and {MAX_PAGE_SIZE}")
    return max_results


async def _page(session: AsyncSession, query: Any, total: int, max_results: int | None, next_token: str | None) -> tuple[list[Any], str | None]:
    size, offset = _page_size(max_results), _offset(next_token)
    if size is not None:
        query = query.offset(offset).limit(size)
    elif offset:
        query = query.offset(offset)
    rows = list((await session.execute(query)).all())
    end = offset + len(rows)
    return rows, (_token(end) if size is not None and end < total else None)


async def _memory_row(session: AsyncSession, memory_id: str, workspace_id: str | None) -> Memory:
    return await get_in_workspace(
        session, Memory, memory_id, workspace_id, missing=MemoryNotFound, label="Memory"
    )


async def _count_items(session: AsyncSession, memory_id: str) -> int:
    return int(await session.scalar(select(func.count()).where(MemoryItem.memory_id == memory_id)) or 0)


async def create_memory(session: AsyncSession, workspace_id: str, description: str = "") -> MemoryInfo:
    description = _description(description)
    await ensure_workspace(session, workspace_id)
    memory = Memory(id=uuid.uuid4().hex, workspace_id=workspace_id, description=description, revision=0)
    session.add(memory)
    await session.flush()
    return _info(memory, 0)


async def get_memory(session: AsyncSession, memory_id: str, workspace_id: str | None) -> MemoryInfo:
    memory = await _memory_row(session, memory_id, workspace_id)
    return _info(memory, await _count_items(session, memory.id))


async def update_memory(
    session: AsyncSession, memory_id: str, workspace_id: str | None, description: str
) -> MemoryInfo:
    memory = await _memory_row(session, memory_id, workspace_id)
    memory.description = _description(description)
    await session.flush()
    return _info(memory, await _count_items(session, memory.id))


async def list_memories(
    session: AsyncSession,
    workspace_id: str | None,
    *,
    max_results: int | None = None,
    next_token: str | None = None,
) -> Page[MemoryInfo]:
    """Memories with their item counts, oldest first; all of them when ``max_results`` is None."""
    counts = (
        select(MemoryItem.memory_id, func.count().label("n"))
        .group_by(MemoryItem.memory_id)
        .subquery()
    )
    query = (
        select(Memory, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.memory_id == Memory.id)
        .order_by(Memory.created_at, Memory.id)
    )
    total_query = select(func.count()).select_from(Memory)
    if workspace_id is not None:
        query = query.where(Memory.workspace_id == workspace_id)
        total_query = total_query.where(Memory.workspace_id == workspace_id)
    total = int(await session.scalar(total_query) or 0)
    rows, token = await _page(session, query, total, max_results, next_token)
    return Page([_info(memory, int(n)) for memory, n in rows], token, total, max_results)


async def delete_memory(session: AsyncSession, memory_id: str, workspace_id: str | None) -> None:
    memory = await _memory_row(session, memory_id, workspace_id)
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


async def _item_row(session: AsyncSession, memory: Memory, item_id: str) -> MemoryItem:
    item = await session.get(MemoryItem, item_id)
    if item is None or item.memory_id != memory.id:
        raise NotFound(f"Memory node '{item_id}' does not exist in memory '{memory.id}'")
    return item


async def add_item(
    session: AsyncSession,
    memory_id: str,
    workspace_id: str | None,
    content: str,
    subject: str | None = None,
) -> MemoryNode:
    memory = await _memory_row(session, memory_id, workspace_id)
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
    return _node(item)


async def get_item(session: AsyncSession, memory_id: str, item_id: str, workspace_id: str | None) -> MemoryNode:
    memory = await _memory_row(session, memory_id, workspace_id)
    return _node(await _item_row(session, memory, item_id))


async def list_items(
    session: AsyncSession,
    memory_id: str,
    workspace_id: str | None,
    *,
    max_results: int | None = None,
    next_token: str | None = None,
) -> Page[MemoryNode]:
    """A memory's items, oldest first; all of them when ``max_results`` is None."""
    memory = await _memory_row(session, memory_id, workspace_id)
    query = (
        select(MemoryItem)
        .where(MemoryItem.memory_id == memory.id)
        .order_by(MemoryItem.created_at, MemoryItem.id)
    )
    total = await _count_items(session, memory.id)
    rows, token = await _page(session, query, total, max_results, next_token)
    return Page([_node(item) for (item,) in rows], token, total, max_results)


async def update_item(
    session: AsyncSession,
    memory_id: str,
    item_id: str,
    workspace_id: str | None,
    content: str,
    subject: str | None = None,
) -> MemoryNode:
    memory = await _memory_row(session, memory_id, workspace_id)
    item = await _item_row(session, memory, item_id)
    content = _content(content)
    item.content = content
    item.subject = _subject(subject, content)
    item.source = "manual"
    item.embedding = None
    item.updated_at = utcnow()
    memory.revision += 1
    await session.flush()
    return _node(item)


async def delete_item(session: AsyncSession, memory_id: str, item_id: str, workspace_id: str | None) -> None:
    memory = await _memory_row(session, memory_id, workspace_id)
    item = await _item_row(session, memory, item_id)
    await session.delete(item)
    memory.revision += 1
    await session.flush()
