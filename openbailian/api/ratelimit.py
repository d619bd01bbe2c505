"""The HTTP side of the limits (``services/limits.py``): failed authentications counted per
source address on every face, and refused before any route runs."""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openbailian.services.limits import AuthFailureLimiter

__all__ = [
    "AuthFailureMiddleware",
    "refuse_addresses_over_the_failure_limit",
    "source_address",
]


AUTH_FAILURE_STATUSES = frozenset({401, 403})


class AuthFailureMiddleware:
    """Counts every 401/403 answer (an unknown key, a bad signature, a wrong admin token, a
    forged upload URL — on every face) against the request's source address."""

    def __init__(self, app: ASGIApp, limiter: AuthFailureLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = source_address(scope)

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in AUTH_FAILURE_STATUSES:
                await self.limiter.failed(address)
            await send(message)

        await self.app(scope, receive, observe)


def source_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def refuse_addresses_over_the_failure_limit(request: Request) -> None:
    """App-wide dependency: an address with too many failed authentications is refused
    before any route runs (in the face's own error shape)."""
    limiter = getattr(request.app.state, "auth_failures", None)
    if limiter is not None:
        await limiter.check(source_address(request.scope))
