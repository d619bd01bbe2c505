"""Console sign-in sessions: a server-side row per browser session (the cookie holds a random
token, the row its SHA-256 hash)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openbailian.storage.models import Base, utcnow

__all__ = ["ConsoleSession"]


class ConsoleSession(Base):
    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Administrator sessions see every workspace (workspace_id is the one being viewed);
    # key sessions are bound to the key's workspace and end when the key is revoked.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    key_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True, index=True
    )
    workspace_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # What the next page shows once (a new key's secrets), sealed with crypto.SecretBox and
    # cleared by the read that shows it (0014).
    flash: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
