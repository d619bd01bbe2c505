"""Dependencies for routes: the runtime, and who the caller is."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from openbailian.errors import AccessDenied, InvalidApiKey, WorkspaceAccessDenied
from openbailian.runtime import Runtime
from openbailian.services.keys import resolve_key

__all__ = ["Caller", "CurrentCaller", "MeteredCaller", "AdminCaller", "RuntimeDep", "KeyCache"]


@dataclass(frozen=True)
class Caller:
    key_id: str
    workspace_id: str


class KeyCache:
    """Recently seen keys, so a call does not hit the database to authenticate.

    Entries live ``ttl`` seconds: a revoked key stops working within that time.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Caller]] = {}

    def get(self, api_key: str) -> Caller | None:
        entry = self._entries.get(api_key)
        if entry and time.monotonic() - entry[0] < self._ttl:
            return entry[1]
        return None

    def put(self, api_key: str, caller: Caller) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[api_key] = (time.monotonic(), caller)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidApiKey("No API-key provided: send 'Authorization: Bearer sk-...'")
    return token.strip()


async def get_caller(request: Request, runtime: RuntimeDep) -> Caller:
    api_key = _bearer(request)
    cache: KeyCache = request.app.state.key_cache
    caller = cache.get(api_key)
    if caller is None:
        async with runtime.db.session() as session:
            row = await resolve_key(session, api_key)
        caller = Caller(key_id=row.id, workspace_id=row.workspace_id)
        cache.put(api_key, caller)
    requested = request.headers.get("x-dashscope-workspace")
    if requested and requested != caller.workspace_id:
        raise WorkspaceAccessDenied(
            f"This API key belongs to workspace '{caller.workspace_id}', not '{requested}'"
        )
    return caller


CurrentCaller = Annotated[Caller, Depends(get_caller)]


async def get_metered_caller(request: Request, caller: CurrentCaller) -> Caller:
    """The caller of a model call, counted against the per-key rate limit."""
    request.app.state.rate_limiter.check(caller.key_id)
    return caller


MeteredCaller = Annotated[Caller, Depends(get_metered_caller)]


def require_admin(request: Request) -> None:
    token = _bearer(request)
    expected = request.app.state.admin_token
    if not expected or not hmac.compare_digest(token, expected):
        raise AccessDenied("This operation needs the administrator token")


AdminCaller = Annotated[None, Depends(require_admin)]
