"""Requests per minute per API key: a token bucket held in this process.

Each API process limits independently; behind N processes a key gets up to N
times the limit. A shared limiter (e.g. in Redis) is the next step at scale.
"""

from __future__ import annotations

import math
import time

from openbailian.errors import RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, per_minute: int, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self._rate = per_minute / 60.0
        self._capacity = float(per_minute)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> None:
        if self._capacity <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            retry_after = math.ceil((1 - tokens) / self._rate)
            raise RateLimited(
                f"Requests rate limit exceeded ({int(self._capacity)} per minute for this API key)",
                retry_after=retry_after,
            )
        self._buckets[key] = (tokens - 1, now)
