"""The one ASGI layer in front of every route: the request's id, the input boundary, and
failed authentications counted per source address.

Each was a middleware of its own; every layer costs an await and a wrapped ``send`` per
request on every route, so they are one here (pure ASGI: no ``BaseHTTPMiddleware``). Every
response carries ``X-Request-Id``, and errors repeat it in the body (``request.state.request_id``).
"""

from __future__ import annotations

from random import getrandbits

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openbailian.api.boundary import InputBoundary
from openbailian.api.ratelimit import AUTH_FAILURE_STATUSES, source_address
from openbailian.services.limits import AuthFailureLimiter

__all__ = ["EdgeMiddleware", "REQUEST_ID_HEADER", "new_request_id"]

REQUEST_ID_HEADER = "x-request-id"
_HEADER_NAME = REQUEST_ID_HEADER.encode()
_VERSION_4 = (0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF, 0x00000000_0000_4000_8000_000000000000)


def new_request_id() -> str:
    """A random (version 4) UUID. Not a secret, so from ``random`` (seeded from the OS, and
    again in a forked child) rather than ``os.urandom``, a system call per request."""
    mask, bits = _VERSION_4
    digits = "%032x" % ((getrandbits(128) & mask) | bits)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, boundary: InputBoundary, failures: AuthFailureLimiter | None) -> None:
        self.app = app
        self.boundary = boundary
        self.failures = failures if failures is not None and failures.enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        receive = await self.boundary.guard(scope, state, receive)
        header = (_HEADER_NAME, request_id.encode())
        failures = self.failures

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
                if failures is not None and message["status"] in AUTH_FAILURE_STATUSES:
                    await failures.failed(source_address(scope))
            await send(message)

        await self.app(scope, receive, send_with_id)
