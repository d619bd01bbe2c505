"""Work claimed in the database, so that one process at a time works on a row.

A worker claims an unfinished row by setting its ``lease_until`` (and counting
``attempts``) in one UPDATE that only matches when nobody holds a live lease; it
renews the lease while it works and clears it when done. A worker that dies
leaves a lease that runs out, and the row becomes claimable again. Used by the
knowledge ingestion (documents) and by session-file processing (files).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, update

from openbailian.storage.db import Database
from openbailian.storage.models import utcnow

__all__ = ["claim", "free_at", "keep_renewing", "release", "renew"]

logger = logging.getLogger("openbailian.storage")


def free_at(model: Any, now: datetime) -> ColumnElement[bool]:
    """Rows of ``model`` nobody holds a live lease on at ``now``."""
    return or_(model.lease_until.is_(None), model.lease_until < now)


async def claim(
    db: Database, model: Any, row_id: str, length: timedelta, *unfinished: ColumnElement[bool]
) -> bool:
    """Take the row's lease atomically; False when it is held, no longer ``unfinished`` or gone."""
    now = utcnow()
    async with db.transaction() as session:
        result = await session.execute(
            update(model)
            .where(model.id == row_id, *unfinished, free_at(model, now))
            .values(lease_until=now + length, attempts=model.attempts + 1)
        )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def renew(db: Database, model: Any, row_id: str, length: timedelta) -> None:
    async with db.transaction() as session:
        await session.execute(update(model).where(model.id == row_id).values(lease_until=utcnow() + length))


async def keep_renewing(db: Database, model: Any, row_id: str, length: timedelta) -> None:
    """Renew every third of the lease until cancelled (work that cannot renew as it goes)."""
    while True:
        await asyncio.sleep(length.total_seconds() / 3)
        try:
            await renew(db, model, row_id, length)
        except Exception:  # noqa: BLE001 - retried at the next beat; the lease lasts three
            logger.warning("could not renew the lease of %s %s", model.__tablename__, row_id, exc_info=True)


async def release(db: Database, model: Any, row_id: str) -> None:
    """Clear the lease; best effort: if the database is closing, the lease just runs out."""
    try:
        async with db.transaction() as session:
            await session.execute(update(model).where(model.id == row_id).values(lease_until=None))
    except Exception:  # noqa: BLE001
        logger.debug("could not release the lease of %s %s", model.__tablename__, row_id, exc_info=True)
