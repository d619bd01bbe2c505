"""API keys of the workspace: listed for everyone, created (shown once) and revoked by the
administrator, as in the management API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from openbailian.console.web import Changing, ConsoleRoute, SignedIn, page, redirect, runtime_of
from openbailian.errors import AccessDenied, NotFound
from openbailian.services import keys as key_service
from openbailian.services.console_sessions import ConsoleUser

__all__ = ["router"]

router = APIRouter(prefix="/console/keys", route_class=ConsoleRoute, include_in_schema=False)


def _require_admin(user: ConsoleUser) -> None:
    if not user.is_admin:
        raise AccessDenied("Only the administrator can create or revoke API keys")


async def _keys_page(request: Request, user: ConsoleUser, **context: Any) -> Response:
    async with runtime_of(request).db.session() as session:
        keys = await key_service.list_keys(session, user.workspace_id)
    return await page(request, "keys.html", keys=keys, **context)


@router.get("")
async def list_keys(request: Request, user: SignedIn, done: str = "") -> Response:
    return await _keys_page(request, user, done=done)


@router.post("")
async def create_key(request: Request, user: Changing, name: str = Form("")) -> Response:
    _require_admin(user)
    async with runtime_of(request).db.transaction() as session:
        created = await key_service.create_key(
            session, user.workspace_id, name.strip()[:200], box=request.app.state.secret_box
        )
    # The one time the key is shown: this response is not cached and not reachable again.
    return await _keys_page(request, user, created=created)


@router.post("/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, user: Changing) -> Response:
    _require_admin(user)
    async with runtime_of(request).db.transaction() as session:
        keys = {k.id for k in await key_service.list_keys(session, user.workspace_id)}
        if key_id not in keys:
            raise NotFound(f"API key '{key_id}' does not exist in workspace '{user.workspace_id}'")
        await key_service.revoke_key(session, key_id)
    return redirect("/console/keys", done="revoked")
