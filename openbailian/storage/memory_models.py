"""Tables of long-term memory (memories and their items) and of plugins (custom tools)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openbailian.storage.models import Base, utcnow

__all__ = ["Memory", "MemoryItem", "MemoryExtraction", "Plugin"]


class Memory(Base):
    """A memory body (``memoryId``); it belongs to one workspace."""

    __tablename__ = "memories"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    description: Mapped[str] = mapped_column(String(1000), default="")
    # Bumped on every change of its items: recall caches embeddings per revision.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MemoryItem(Base):
    """One remembered fact (a memory node)."""

    __tablename__ = "memory_items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    memory_id: Mapped[str] = mapped_column(
        ForeignKey("memories.id", ondelete="CASCADE"), index=True
    )
    content: Mapped[str] = mapped_column(Text)
    # What the fact is about ("饮食偏好"), normalised; a newer fact with the same subject replaces it.
    subject: Mapped[str] = mapped_column(String(200), default="")
    # "auto" (extracted from a conversation) or "manual" (added through the API or CLI).
    source: Mapped[str] = mapped_column(String(16), default="manual")
    # float32 vector of the content; NULL until computed (manual items are embedded lazily).
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemoryExtraction(Base):
    """A finished turn waiting for its facts to be extracted into a memory: queued in the
    database when the answer is sent, claimed with a lease (``storage/leases.py``) by whichever
    process runs background work, deleted once its facts are saved."""

    __tablename__ = "memory_extractions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    memory_id: Mapped[str] = mapped_column(ForeignKey("memories.id", ondelete="CASCADE"), index=True)
    request_id: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(200))  # the app's model (OPENBAILIAN_MEMORY_MODEL wins)
    user_text: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text, default="")
    # "pending" until done (then the row is deleted) or "failed" after its last attempt.
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Plugin(Base):
    """A custom plugin (an HTTP API the model may call); its id is the ``tool_id``."""

    __tablename__ = "plugins"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # The validated openbailian.tools.plugin.PluginSpec, as JSON.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
