"""Requests per minute per API key, and failed authentications per source address: token
buckets in the database (``storage/buckets.py``), so every process on one database shares
them — a key's limit holds across API processes (``serve --workers N``, any number of
machines on PostgreSQL), and so does an address's failure budget.

Neither costs a database write per successful request:

- **A key's requests** are taken from its shared bucket a few at a time (an *allowance*, as
  envoy's quota-based rate limiting leases quota to each proxy): a process takes up to
  ``allowance`` tokens in one write and answers that many calls of the key from memory
  before it writes again. Every answered call spent a token of the shared bucket, so the
  key never gets more than its limit plus the refill across all processes together; a
  process may hold up to ``allowance - 1`` tokens it has not spent yet (dropped after a
  full refill, a minute), so while the others run dry a key can be refused that many calls
  early. Near the end of its bucket a process takes one token at a time. Limits under 100
  a minute take one token per call (an allowance of 1: exact).
- **Failed authentications** are written only when one happens (``failed``); the check
  of an address's budget is a column of the API key's own query (``check_params``), and a
  separate read only where no key is looked up (``check``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openbailian.errors import RateLimited
from openbailian.storage.buckets import Bucket, SharedBuckets

__all__ = ["RateLimiter", "AuthFailureLimiter", "AddressCheck", "allowance_for"]

MAX_ALLOWANCE = 100  # tokens a process takes from a key's shared bucket at once, at most
ALLOWANCE_SHARE = 50  # ... and at most 1/50 of the key's limit
MAX_HELD_KEYS = 10_000  # allowances kept in memory before the spent and stale ones are dropped


def allowance_for(per_minute: int) -> int:
    """How many tokens of a key's bucket one process takes at once (1 below 100 a minute)."""
    return max(1, min(MAX_ALLOWANCE, per_minute // ALLOWANCE_SHARE))


@dataclass(slots=True)
class _Held:
    tokens: int
    until: float  # monotonic seconds after which unspent tokens are dropped


class RateLimiter:
    """``per_minute`` requests per key (a bucket of that many, refilled over a minute); ``0`` turns it off."""

    def __init__(
        self, buckets: SharedBuckets, per_minute: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets = buckets
        self._per_minute = per_minute
        self._bucket = Bucket.per_minute(per_minute) if per_minute > 0 else None
        self.allowance = allowance_for(per_minute)
        self._hold_seconds = 60.0  # a full refill: the bucket would be full again by then
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._taking: dict[str, asyncio.Future[None]] = {}

    async def check(self, key: str) -> None:
        if self._bucket is None:
            return
        while True:
            if self._spend_held(key):
                return
            taking = self._taking.get(key)
            if taking is None:
                break
            await asyncio.shield(taking)  # another call of this key is taking an allowance
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._taking[key] = done
        try:
            taken = await self._buckets.take(f"key:{key}", self._bucket, self.allowance)
        finally:
            del self._taking[key]
            done.set_result(None)
        if not taken.granted:
            assert taken.retry_after is not None
            raise RateLimited(
                f"Requests rate limit exceeded ({self._per_minute} per minute for this API key)",
                retry_after=taken.retry_after,
            )
        self._keep(key, taken.granted - 1)

    def _spend_held(self, key: str) -> bool:
        held = self._held.get(key)
        if held is None or held.tokens < 1 or held.until < self._clock():
            return False
        held.tokens -= 1
        return True

    def _keep(self, key: str, tokens: int) -> None:
        if len(self._held) >= MAX_HELD_KEYS:
            now = self._clock()
            self._held = {k: h for k, h in self._held.items() if h.tokens and h.until >= now}
        self._held[key] = _Held(tokens, self._clock() + self._hold_seconds)


@dataclass(frozen=True, slots=True)
class AddressCheck:
    """An address's failure budget, checked in the query that looks its credentials up: the
    bound values for ``storage.buckets.TOKENS_OF`` and the verdict on what it read."""

    limiter: AuthFailureLimiter
    address: str
    params: dict[str, Any]

    def verdict(self, tokens: float | None) -> None:
        """Raise ``RateLimited`` when the address has no failure left (None: a full bucket)."""
        self.limiter.refuse_when_spent(tokens)


class AuthFailureLimiter:
    """Failed authentications per source address: a bucket of ``per_minute`` failures. An
    address that has used it up gets ``429`` on every route that takes credentials (before
    they are even looked at) until the bucket refills; ``0`` turns it off."""

    def __init__(self, buckets: SharedBuckets, per_minute: int) -> None:
        self._buckets = buckets
        self._per_minute = per_minute
        self._bucket = Bucket.per_minute(per_minute) if per_minute > 0 else None

    @property
    def enabled(self) -> bool:
        return self._bucket is not None

    async def check(self, address: str) -> None:
        """One read: ``RateLimited`` when the address has used up its failures."""
        if self._bucket is not None:
            self.refuse_when_spent(await self._buckets.tokens(f"auth:{address}", self._bucket))

    def check_with(self, address: str) -> AddressCheck | None:
        """The check of ``address`` folded into a credentials query (None: the limit is off)."""
        if self._bucket is None:
            return None
        return AddressCheck(self, address, self._buckets.params(f"auth:{address}", self._bucket))

    def refuse_when_spent(self, tokens: float | None) -> None:
        if self._bucket is None or tokens is None or tokens >= 1:
            return
        raise RateLimited(
            f"Too many failed authentication attempts from this address "
            f"(more than {self._per_minute} per minute); try again later",
            retry_after=self._bucket.retry_after(tokens),
        )

    async def failed(self, address: str) -> None:
        if self._bucket is not None:
            await self._buckets.spend(f"auth:{address}", self._bucket)
