"""Requests per minute per API key, and failed authentications per source address: token
buckets in the database (``storage/buckets.py``), so every process on one database shares
them — a key's limit holds across API processes (``serve --workers N`` on SQLite, any number
of machines on PostgreSQL), and so does an address's failure budget.
"""

from __future__ import annotations

from openbailian.errors import RateLimited
from openbailian.storage.buckets import Bucket, SharedBuckets

__all__ = ["RateLimiter", "AuthFailureLimiter"]


class RateLimiter:
    """``per_minute`` requests per key (a bucket of that many, refilled over a minute); ``0`` turns it off."""

    def __init__(self, buckets: SharedBuckets, per_minute: int) -> None:
        self._buckets = buckets
        self._per_minute = per_minute
        self._bucket = Bucket.per_minute(per_minute) if per_minute > 0 else None

    async def check(self, key: str) -> None:
        if self._bucket is None:
            return
        retry_after = await self._buckets.take(f"key:{key}", self._bucket)
        if retry_after is not None:
            raise RateLimited(
                f"Requests rate limit exceeded ({self._per_minute} per minute for this API key)",
                retry_after=retry_after,
            )


class AuthFailureLimiter:
    """Failed authentications per source address: a bucket of ``per_minute`` failures. An
    address that has used it up gets ``429`` on every route (before its credentials are even
    looked at) until the bucket refills; ``0`` turns it off."""

    def __init__(self, buckets: SharedBuckets, per_minute: int) -> None:
        self._buckets = buckets
        self._per_minute = per_minute
        self._bucket = Bucket.per_minute(per_minute) if per_minute > 0 else None

    async def check(self, address: str) -> None:
        if self._bucket is None:
            return
        retry_after = await self._buckets.empty_for(f"auth:{address}", self._bucket)
        if retry_after is not None:
            raise RateLimited(
                f"Too many failed authentication attempts from this address "
                f"(more than {self._per_minute} per minute); try again later",
                retry_after=retry_after,
            )

    async def failed(self, address: str) -> None:
        if self._bucket is not None:
            await self._buckets.spend(f"auth:{address}", self._bucket)
