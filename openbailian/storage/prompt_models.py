"""The table of prompt templates (the OpenAPI's promptTemplates), one workspace each."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openbailian.storage.models import Base, utcnow

__all__ = ["PromptTemplateRow"]


class PromptTemplateRow(Base):
    """A reusable prompt; ids sort in creation order (listing pages by id)."""

    __tablename__ = "prompt_templates"
    __table_args__ = (Index("ix_prompt_templates_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
