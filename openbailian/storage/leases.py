"""Work claimed in the database, so that one process at a time works on a row.

A worker claims an unfinished row by setting its ``lease_until`` (and counting
``attempts``) in one UPDATE that only matches when nobody holds a live lease; it
renews the lease while it works and clears it when done. Each claim carries an owner
token (``lease_owner``): a stalled worker whose lease ran out cannot renew or release
the claim of the worker that took the row over. A worker that dies
leaves a lease that runs out, and the row becomes claimable again. Used by the
knowledge ingestion (documents) and by session-file processing (files).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, update

from openbailian.storage.db import Database
from openbailian.storage.models import utcnow

__all__ = ["Claim", "claim", "free_at", "keep_renewing", "release", "renew", "resume_every"]

logger = logging.getLogger("openbailian.storage")


def free_at(model: Any, now: datetime) -> ColumnElement[bool]:
    """Rows of ``model`` nobody holds a live lease on at ``now``."""
    return or_(model.lease_until.is_(None), model.lease_until < now)


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker's hold on one row: renewing and releasing touch the row only while it is
    still this claim (same owner token), never a claim another worker took over since."""

    model: Any
    row_id: str
    token: str

    def mine(self) -> ColumnElement[bool]:
        return and_(self.model.id == self.row_id, self.model.lease_owner == self.token)


async def claim(
    db: Database, model: Any, row_id: str, length: timedelta, *unfinished: ColumnElement[bool]
) -> Claim | None:
    """Take the row's lease atomically; None when it is held, no longer ``unfinished`` or gone."""
    now = utcnow()
    token = uuid.uuid4().hex
    async with db.transaction() as session:
        result = await session.execute(
            update(model)
            .where(model.id == row_id, *unfinished, free_at(model, now))
            .values(lease_until=now + length, lease_owner=token, attempts=model.attempts + 1)
        )
    return Claim(model, row_id, token) if result.rowcount == 1 else None  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult


async def renew(db: Database, held: Claim, length: timedelta) -> bool:
    """Extend the lease; False when the claim was lost (it ran out and another worker took the row)."""
    async with db.transaction() as session:
        result = await session.execute(update(held.model).where(held.mine()).values(lease_until=utcnow() + length))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # execute() is typed Result; an UPDATE gives a CursorResult


async def keep_renewing(db: Database, held: Claim, length: timedelta) -> None:
    """Renew every third of the lease until cancelled or the claim is lost (work that cannot
    renew as it goes)."""
    while True:
        await asyncio.sleep(length.total_seconds() / 3)
        try:
            if not await renew(db, held, length):
                logger.warning("lost the lease of %s %s to another worker", held.model.__tablename__, held.row_id)
                return
        except Exception:  # noqa: BLE001 - retried at the next beat; the lease lasts three
            logger.warning("could not renew the lease of %s %s", held.model.__tablename__, held.row_id, exc_info=True)


async def release(db: Database, held: Claim) -> None:
    """Clear the lease if it is still ours; best effort: if the database is closing, it just runs out."""
    try:
        async with db.transaction() as session:
            await session.execute(update(held.model).where(held.mine()).values(lease_until=None, lease_owner=None))
    except Exception:  # noqa: BLE001
        logger.debug("could not release the lease of %s %s", held.model.__tablename__, held.row_id, exc_info=True)


async def resume_every(seconds: float, resume: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``resume`` (schedule the unclaimed work of a table) every ``seconds`` until cancelled;
    a failed round is logged and the next one tries again."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await resume()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keeps looking
            logger.exception("looking for %s failed", what)
