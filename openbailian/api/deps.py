"""Dependencies for routes: the runtime, and who the caller is."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from openbailian.api.boundary import PARSED_BODY_KEY, ParsedBody
from openbailian.api.ratelimit import checks_address, source_address
from openbailian.engine.call import AppStamp, SessionAhead
from openbailian.errors import AccessDenied, InvalidApiKey, WorkspaceAccessDenied
from openbailian.runtime import Runtime
from openbailian.services.keys import check_key
from openbailian.services.limits import AuthFailureLimiter

__all__ = ["Caller", "CurrentCaller", "KeyCaller", "AdminCaller", "RuntimeDep", "get_runtime", "metered_caller"]


@dataclass(frozen=True)
class Caller:
    key_id: str
    workspace_id: str
    app: AppStamp | None = None  # the called app's row (model calls), read with the key
    session: SessionAhead | None = None  # the stored session the call continues, read with the key


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime_dependency(request: Request) -> Runtime:
    # A coroutine on purpose: FastAPI runs a plain-function dependency in a worker thread,
    # one thread hop on every request for an attribute read.
    return get_runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime_dependency)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidApiKey("No API-key provided: send 'Authorization: Bearer sk-...'")
    return token.strip()


def _bearer_or_bare(request: Request) -> str:
    """``Bearer sk-…``, or the bare key (LlamaIndex's DashScopeCloudRetriever sends it so)."""
    header = request.headers.get("authorization", "").strip()
    if header and " " not in header:
        return header
    return _bearer(request)


def _session_named(request: Request) -> str | None:
    """The stored session a completion body continues (``input.session_id`` without a
    caller's conversation), from the body the input boundary has parsed; None: none, or
    not known yet (the engine then reads the session itself)."""
    parsed = request.scope.get("state", {}).get(PARSED_BODY_KEY)
    given = parsed.value.get("input") if isinstance(parsed, ParsedBody) and isinstance(parsed.value, dict) else None
    if not isinstance(given, dict) or given.get("messages") is not None or given.get("history"):
        return None
    session_id = given.get("session_id")
    return session_id if isinstance(session_id, str) and session_id else None


async def _authenticate(request: Request, runtime: Runtime, app_id: str | None, *, bare: bool = False) -> Caller:
    """The key's caller; the source address's failure budget is read in the same query
    (``api/ratelimit.py``), and checked before the key is."""
    failures: AuthFailureLimiter | None = getattr(request.app.state, "auth_failures", None)
    address = failures.check_with(source_address(request.scope)) if failures is not None else None
    try:
        api_key = _bearer_or_bare(request) if bare else _bearer(request)
    except InvalidApiKey:
        if address is not None:  # no key to look up: the address's budget in a read of its own
            await address.limiter.check(address.address)
        raise
    session_id = _session_named(request) if app_id is not None else None
    session = runtime.sessions.read_ahead(session_id) if session_id else None
    checked = await check_key(runtime.db, api_key, app_id, address=address, session=session)
    caller = Caller(key_id=checked.key_id, workspace_id=checked.workspace_id, app=checked.app, session=checked.session)
    requested = request.headers.get("x-dashscope-workspace")
    if requested and requested != caller.workspace_id:
        raise WorkspaceAccessDenied(
            f"This API key belongs to workspace '{caller.workspace_id}', not '{requested}'"
        )
    return caller


@checks_address
async def get_caller(request: Request, runtime: RuntimeDep) -> Caller:
    return await _authenticate(request, runtime, None)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


@checks_address
async def get_key_caller(request: Request, runtime: RuntimeDep) -> Caller:
    return await _authenticate(request, runtime, None, bare=True)


# The DashScope-native knowledge API: the key with or without "Bearer ".
KeyCaller = Annotated[Caller, Depends(get_key_caller)]


async def metered_caller(request: Request, runtime: Runtime, app_id: str) -> Caller:
    """The caller of a model call of app ``app_id``, counted against the per-key rate limit;
    the app's row is read with the key, in one query. Called by the route itself, not as a
    dependency: on the completion call FastAPI's solving of nested dependencies cost more
    than the key check it wraps. The route is marked :func:`checks_address`."""
    caller = await _authenticate(request, runtime, app_id)
    await request.app.state.rate_limiter.check(caller.key_id)
    return caller


def require_admin(request: Request) -> None:
    token = _bearer(request)
    expected = request.app.state.admin_token
    if not expected or not hmac.compare_digest(token, expected):
        raise AccessDenied("This operation needs the administrator token")


AdminCaller = Annotated[None, Depends(require_admin)]
