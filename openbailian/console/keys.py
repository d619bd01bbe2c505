"""API keys and AccessKeys of the workspace: listed for everyone, created (shown once) and
revoked by the administrator, as in the management API.

A create is a POST answered by a redirect (POST-redirect-GET): the new secrets travel in the
session's sealed one-time flash and are shown by the next page only, so reloading the page
neither creates a second key nor shows the secret again.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from openbailian.console.web import SESSION_COOKIE, Changing, ConsoleRoute, SignedIn, page, redirect, runtime_of
from openbailian.errors import AccessDenied
from openbailian.services import keys as key_service
from openbailian.services.console_sessions import ConsoleUser, put_flash, take_flash

__all__ = ["router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PAGES = {"api_key": ("/console/keys", "keys.html"), "access_key": ("/console/access-keys", "access_keys.html")}


def _require_admin(user: ConsoleUser) -> None:
    if not user.is_admin:
        raise AccessDenied("Only the administrator can create or revoke API keys and AccessKeys")


async def _keys_page(request: Request, user: ConsoleUser, kind: str, done: str) -> Response:
    runtime = runtime_of(request)
    created = await take_flash(runtime.db, request.cookies.get(SESSION_COOKIE), request.app.state.secret_box)
    if created is not None and created.get("kind") != kind:
        created = None  # made on the other page, whose reload it was meant for
    async with runtime.db.session() as session:
        keys = await key_service.list_keys(session, user.workspace_id, kind=kind)
    return await page(request, PAGES[kind][1], keys=keys, created=created, done=done)


async def _create(request: Request, user: ConsoleUser, kind: str, name: str) -> Response:
    _require_admin(user)
    box = request.app.state.secret_box
    make = key_service.create_key if kind == "api_key" else key_service.create_access_key
    async with runtime_of(request).db.transaction() as session:
        created = await make(session, user.workspace_id, name.strip()[:200], box=box)
    shown = {
        "kind": kind,
        "api_key": created.api_key,
        "access_key_id": created.access_key_id,
        "access_key_secret": created.access_key_secret,
    }
    await put_flash(runtime_of(request).db, request.cookies.get(SESSION_COOKIE, ""), box, shown)
    return redirect(PAGES[kind][0])  # the flash says it: a reload shows no stale notice


async def _revoke(request: Request, user: ConsoleUser, kind: str, key_id: str) -> Response:
    _require_admin(user)
    async with runtime_of(request).db.transaction() as session:
        await key_service.get_key(session, key_id, user.workspace_id)
        await key_service.revoke_key(session, key_id)
    return redirect(PAGES[kind][0], done="revoked")


@router.get("/keys")
async def list_keys(request: Request, user: SignedIn, done: str = "") -> Response:
    return await _keys_page(request, user, "api_key", done)


@router.post("/keys")
async def create_key(request: Request, user: Changing, name: str = Form("")) -> Response:
    return await _create(request, user, "api_key", name)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, user: Changing) -> Response:
    return await _revoke(request, user, "api_key", key_id)


@router.get("/access-keys")
async def list_access_keys(request: Request, user: SignedIn, done: str = "") -> Response:
    return await _keys_page(request, user, "access_key", done)


@router.post("/access-keys")
async def create_access_key(request: Request, user: Changing, name: str = Form("")) -> Response:
    return await _create(request, user, "access_key", name)


@router.post("/access-keys/{key_id}/revoke")
async def revoke_access_key(request: Request, key_id: str, user: Changing) -> Response:
    return await _revoke(request, user, "access_key", key_id)
