"""Token buckets kept in the database (``rate_buckets``), shared by every process on it.

A bucket holds up to ``capacity`` tokens and refills at ``rate`` tokens a second. Taking a
token is one atomic upsert (``INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING``): the
row lock of the conflicting row serialises concurrent takers on PostgreSQL, SQLite has one
writer at a time, so two processes never both take the last token. Time is the callers'
wall clock (``time.time``), passed in: machines of one deployment agree on it to well under
the second a token lasts. A bucket untouched for ``capacity / rate`` seconds is full again,
exactly like a missing row, so old rows are deleted now and then.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from openbailian.storage.db import Database
from openbailian.storage.models import RateBucket

__all__ = ["Bucket", "SharedBuckets"]

PRUNE_EVERY = 1000  # writes between two deletions of buckets that are full again


@dataclass(frozen=True, slots=True)
class Bucket:
    capacity: float
    rate: float  # tokens per second

    @classmethod
    def per_minute(cls, count: int) -> Bucket:
        return cls(capacity=float(count), rate=count / 60.0)

    def retry_after(self, tokens: float) -> int:
        """Whole seconds until a bucket holding ``tokens`` has one again."""
        return max(1, math.ceil((1 - tokens) / self.rate))


class SharedBuckets:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._insert: Any = sqlite.insert if db.is_sqlite else postgresql.insert
        self._least: Any = func.min if db.is_sqlite else func.least  # SQLite's 2-argument min() is scalar
        self._greatest: Any = func.max if db.is_sqlite else func.greatest
        self._writes = 0

    def _refilled(self, bucket: Bucket, now: float) -> ColumnElement[float]:
        """The stored row's tokens as of ``now``, in SQL."""
        elapsed = self._greatest(0.0, now - RateBucket.updated)
        return self._least(bucket.capacity, RateBucket.tokens + elapsed * bucket.rate)  # type: ignore[no-any-return]  # func.min/least are chosen per dialect, so typed Any

    async def take(self, key: str, bucket: Bucket) -> int | None:
        """Take one token; None when taken, else the seconds to wait for one."""
        now = self._clock()
        refilled = self._refilled(bucket, now)
        statement = (
            self._insert(RateBucket)
            .values(key=key, tokens=bucket.capacity - 1, updated=now)
            .on_conflict_do_update(
                index_elements=[RateBucket.key],
                set_={"tokens": refilled - 1, "updated": self._greatest(now, RateBucket.updated)},
                where=refilled >= 1,
            )
            .returning(RateBucket.tokens)
        )
        async with self._db.begin() as conn:
            taken = (await conn.execute(statement)).first()
            if taken is not None:
                await self._wrote(conn, bucket, now)
                return None
            tokens = await conn.scalar(select(refilled).where(RateBucket.key == key))
        return bucket.retry_after(float(tokens or 0.0))

    async def spend(self, key: str, bucket: Bucket) -> None:
        """Take one token if there is one, never below zero (counting failures)."""
        now = self._clock()
        statement = (
            self._insert(RateBucket)
            .values(key=key, tokens=bucket.capacity - 1, updated=now)
            .on_conflict_do_update(
                index_elements=[RateBucket.key],
                set_={
                    "tokens": self._greatest(0.0, self._refilled(bucket, now) - 1),
                    "updated": self._greatest(now, RateBucket.updated),
                },
            )
        )
        async with self._db.begin() as conn:
            await conn.execute(statement)
            await self._wrote(conn, bucket, now)

    async def empty_for(self, key: str, bucket: Bucket) -> int | None:
        """Without taking anything: None when the bucket has a token, else the seconds to wait."""
        now = self._clock()
        async with self._db.engine.connect() as conn:
            tokens = await conn.scalar(select(self._refilled(bucket, now)).where(RateBucket.key == key))
        if tokens is None or tokens >= 1:
            return None
        return bucket.retry_after(float(tokens))

    async def _wrote(self, conn: Any, bucket: Bucket, now: float) -> None:
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            # Buckets of this kind untouched for a full refill hold as much as a missing row.
            await conn.execute(delete(RateBucket).where(RateBucket.updated < now - bucket.capacity / bucket.rate))
