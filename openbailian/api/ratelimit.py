"""The HTTP side of the limits (``services/limits.py``): failed authentications counted per
source address on every face, and an address over its budget refused before any route
looks at its credentials.

The check costs no round trip of its own where the route looks an API key up: the key's
query reads the address's bucket too (``api/deps.py``, dependencies marked with
:func:`checks_address`). Every other route reads it in the app-wide dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from starlette.types import Scope

from openbailian.services.limits import AuthFailureLimiter

__all__ = [
    "AUTH_FAILURE_STATUSES",
    "checks_address",
    "takes_no_credentials",
    "refuse_addresses_over_the_failure_limit",
    "source_address",
]

AUTH_FAILURE_STATUSES = frozenset({401, 403})  # counted against the address (api/middleware.py)
_MARK = "checks_failed_address"  # on a dependency: it checks the address with the credentials
_FOLDED = "_openbailian_checks_address"  # on a route: cached answer of _route_checks_address

F = TypeVar("F", bound=Callable[..., Any])


def checks_address(dependency: F) -> F:
    """Mark a dependency that checks the source address's failure budget itself, in the
    query that looks its credentials up; routes using it skip the app-wide read."""
    setattr(dependency, _MARK, True)
    return dependency


def takes_no_credentials(endpoint: F) -> F:
    """Mark a route that reads no credentials at all (``/healthz``): the failure budget, which
    guards routes that take credentials, is not read for it."""
    setattr(endpoint, _MARK, True)
    return endpoint


def source_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def refuse_addresses_over_the_failure_limit(request: Request) -> None:
    """App-wide dependency: an address with too many failed authentications is refused
    before any route runs (in the face's own error shape)."""
    limiter: AuthFailureLimiter | None = getattr(request.app.state, "auth_failures", None)
    if limiter is None or not limiter.enabled or _route_checks_address(request.scope.get("route")):
        return
    await limiter.check(source_address(request.scope))


def _route_checks_address(route: Any) -> bool:
    """Whether one of the route's dependencies checks the address with the credentials."""
    if route is None:
        return False
    folded = getattr(route, _FOLDED, None)
    if folded is None:
        folded = _depends_on_a_checker(getattr(route, "dependant", None))
        setattr(route, _FOLDED, folded)
    return bool(folded)


def _depends_on_a_checker(dependant: Any) -> bool:
    if dependant is None:
        return False
    if getattr(dependant.call, _MARK, False):
        return True
    return any(_depends_on_a_checker(sub) for sub in dependant.dependencies)
