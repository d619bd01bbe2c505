"""Requests per minute per API key: a token bucket held in this process.

Each API process limits independently; behind N processes a key gets up to N
times the limit. A shared limiter (e.g. in Redis) is the next step at scale.
"""

from __future__ import annotations

import math
import time

from fastapi import Request

from openbailian.errors import RateLimited

__all__ = [
    "RateLimiter",
    "AuthFailureLimiter",
    "AuthFailureMiddleware",
    "refuse_addresses_over_the_failure_limit",
    "source_address",
]


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


class AuthFailureLimiter:
    """Failed authentications per source address: a token bucket of ``per_minute``
    failures. An address that has used it up gets ``429`` on every route (before its
    credentials are even looked at) until the bucket refills; ``0`` turns it off."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self._rate = per_minute / 60.0
        self._capacity = float(per_minute)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, address: str, now: float) -> float:
        tokens, last = self._buckets.get(address, (self._capacity, now))
        return min(self._capacity, tokens + (now - last) * self._rate)

    def check(self, address: str) -> None:
        if self._capacity <= 0 or address not in self._buckets:
            return
        tokens = self._tokens(address, self._clock())
        if tokens < 1:
            raise RateLimited(
                f"Too many failed authentication attempts from this address "
                f"(more than {int(self._capacity)} per minute); try again later",
                retry_after=math.ceil((1 - tokens) / self._rate),
            )

    def failed(self, address: str) -> None:
        if self._capacity <= 0:
            return
        now = self._clock()
        self._buckets[address] = (max(0.0, self._tokens(address, now) - 1), now)
        if len(self._buckets) > 100_000:  # bounded: forget the addresses that recovered
            self._buckets = {a: b for a, b in self._buckets.items() if self._tokens(a, now) < self._capacity}


AUTH_FAILURE_STATUSES = frozenset({401, 403})


class AuthFailureMiddleware:
    """Counts every 401/403 answer (an unknown key, a bad signature, a wrong admin token, a
    forged upload URL — on every face) against the request's source address."""

    def __init__(self, app, limiter: AuthFailureLimiter) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = source_address(scope)

        async def observe(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start" and message["status"] in AUTH_FAILURE_STATUSES:
                self.limiter.failed(address)
            await send(message)

        await self.app(scope, receive, observe)


def source_address(scope) -> str:  # type: ignore[no-untyped-def]
    client = scope.get("client")
    return client[0] if client else "unknown"


async def refuse_addresses_over_the_failure_limit(request: Request) -> None:
    """App-wide dependency: an address with too many failed authentications is refused
    before any route runs (in the face's own error shape)."""
    limiter = getattr(request.app.state, "auth_failures", None)
    if limiter is not None:
        limiter.check(source_address(request.scope))
