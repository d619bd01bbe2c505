"""Usage counters: calls, errors and tokens per (workspace, app, UTC day)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from openbailian.storage.models import Base

__all__ = ["UsageDay"]


class UsageDay(Base):
    """One row per workspace, app and day (UTC), added to by an atomic upsert per call.

    No foreign keys: the counts of a deleted app stay (they are history, not state)."""

    __tablename__ = "usage_days"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
