"""Token buckets kept in the database (``rate_buckets``), shared by every process on it.

A bucket holds up to ``capacity`` tokens and refills at ``rate`` tokens a second. Taking
tokens is one atomic upsert (``INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING``): the
row lock of the conflicting row serialises concurrent takers on PostgreSQL, SQLite has one
writer at a time, so two processes never both take the last token. Time is the callers'
wall clock (``time.time``), passed in: machines of one deployment agree on it to well under
the second a token lasts. A bucket untouched for ``capacity / rate`` seconds is full again,
exactly like a missing row, so old rows are deleted now and then.

Every statement is built once with bound parameters (a call only binds its values) and each
method is one round trip (``Database.read`` / ``write``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Float, Integer, String, bindparam, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from openbailian.storage.db import Database
from openbailian.storage.models import RateBucket

__all__ = ["Bucket", "SharedBuckets", "Taken", "TOKENS_OF"]

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

    def params(self, key: str, now: float, prefix: str = "bucket_") -> dict[str, Any]:
        """The bound values of the statements below (and of ``TOKENS_OF``) for this bucket."""
        return {
            f"{prefix}key": key, f"{prefix}now": now,
            f"{prefix}capacity": self.capacity, f"{prefix}rate": self.rate,
        }


@dataclass(frozen=True, slots=True)
class Taken:
    """What ``take`` got: ``granted`` tokens, or none and the seconds to wait for one."""

    granted: int
    retry_after: int | None = None


def _param(name: str, type_: Any = Float) -> Any:
    return bindparam(f"bucket_{name}", type_=type_)


def _larger(a: Any, b: Any) -> Any:
    return case((a > b, a), else_=b)


def _smaller(a: Any, b: Any) -> Any:
    return case((a < b, a), else_=b)


# The stored row's tokens as of :bucket_now, in SQL: CASE rather than least()/greatest(),
# which SQLite spells min()/max().
_REFILLED = _smaller(
    _param("capacity"),
    RateBucket.tokens + _larger(0.0, _param("now") - RateBucket.updated) * _param("rate"),
)
# A bucket's tokens as a column any query can add (one round trip for both); NULL: no row, full.
TOKENS_OF = select(_REFILLED).where(RateBucket.key == _param("key", String)).scalar_subquery()
_TOKENS = select(_REFILLED).where(RateBucket.key == _param("key", String))


def _upsert(dialect_insert: Any, *, at_least: Any | None, spend: Any) -> Any:
    """Take ``spend`` tokens (an SQL expression of ``:bucket_count``), only when the bucket
    holds at least ``at_least`` (None: whatever it holds, never going below zero)."""
    statement = dialect_insert(RateBucket).values(
        key=_param("key", String), tokens=_param("capacity") - spend, updated=_param("now"),
    )
    left = _REFILLED - spend
    return statement.on_conflict_do_update(
        index_elements=[RateBucket.key],
        set_={
            "tokens": left if at_least is not None else _larger(0.0, left),
            "updated": _larger(_param("now"), RateBucket.updated),
        },
        where=(_REFILLED >= at_least) if at_least is not None else None,
    ).returning(RateBucket.tokens)


_COUNT = _param("count", Integer)
_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_TAKE = {name: _upsert(insert, at_least=_COUNT, spend=_COUNT) for name, insert in _INSERTS.items()}
_SPEND = {name: _upsert(insert, at_least=None, spend=1.0) for name, insert in _INSERTS.items()}
_PRUNE = delete(RateBucket).where(RateBucket.updated < _param("stale_before"))


class SharedBuckets:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._writes = 0

    async def take(self, key: str, bucket: Bucket, count: int = 1) -> Taken:
        """Take ``count`` tokens, or one when fewer are left; none when not even one is."""
        now = self._clock()
        params = bucket.params(key, now)
        prune = self._prune_due()

        def work(conn: Connection) -> Taken:
            take = _TAKE[conn.dialect.name]
            for wanted in dict.fromkeys((count, 1)):
                if conn.execute(take, {**params, "bucket_count": wanted}).first() is not None:
                    _prune(conn, bucket, now, prune)
                    return Taken(wanted)
            tokens = conn.execute(_TOKENS, params).scalar()
            return Taken(0, bucket.retry_after(float(tokens or 0.0)))

        return await self._db.write(work, quick=True)

    async def spend(self, key: str, bucket: Bucket) -> float:
        """Take one token if there is one, never below zero (counting failures); the tokens left."""
        params = bucket.params(key, self._clock())
        prune = self._prune_due()

        def work(conn: Connection) -> float:
            left = conn.execute(_SPEND[conn.dialect.name], params).scalar()
            _prune(conn, bucket, params["bucket_now"], prune)
            return float(left or 0.0)

        return await self._db.write(work, quick=True)

    async def tokens(self, key: str, bucket: Bucket) -> float | None:
        """The bucket's tokens now (None: no row, a full bucket), without taking any."""
        params = bucket.params(key, self._clock())
        found = await self._db.read(lambda conn: conn.execute(_TOKENS, params).scalar(), quick=True)
        return None if found is None else float(found)

    def params(self, key: str, bucket: Bucket) -> dict[str, Any]:
        """The bound values of ``TOKENS_OF`` for this bucket now (for a query that adds it)."""
        return bucket.params(key, self._clock())

    def _prune_due(self) -> bool:
        self._writes += 1
        return self._writes % PRUNE_EVERY == 0


def _prune(conn: Connection, bucket: Bucket, now: float, due: bool) -> None:
    if due:
        # Buckets of this kind untouched for a full refill hold as much as a missing row.
        conn.execute(_PRUNE, {"bucket_stale_before": now - bucket.capacity / bucket.rate})
