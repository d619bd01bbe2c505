"""Plugins: register one from its spec, edit its endpoint, test a call, see which apps use it,
delete it. A service token is never written into a page: the edit form says whether one is set,
and an empty token field keeps it."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from openbailian.console.web import Changing, ConsoleRoute, SignedIn, page, redirect, runtime_of
from openbailian.errors import InvalidParameter
from openbailian.services import apps as app_service
from openbailian.services import plugins as service
from openbailian.tools.builtins import BUILTINS
from openbailian.tools.plugin import opened_spec, public_spec

__all__ = ["router"]

router = APIRouter(prefix="/console/plugins", route_class=ConsoleRoute, include_in_schema=False)

EXAMPLE_SPEC = {
    "name": "get_weather",
    "title": "天气查询",
    "description": "Look up the weather of a city",
    "method": "GET",
    "url": "https://example.com/weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise InvalidParameter(f"{what} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidParameter(f"{what} must be a JSON object")
    return value


@router.get("")
async def list_plugins(request: Request, user: SignedIn, done: str = "") -> Response:
    async with runtime_of(request).db.session() as session:
        plugins = await service.list_plugins(session, user.workspace_id)
    return await page(
        request, "plugins.html", plugins=[(p, opened_spec(p.spec, None)) for p in plugins],
        builtins=BUILTINS, example=json.dumps(EXAMPLE_SPEC, ensure_ascii=False, indent=2), done=done,
    )


@router.post("")
async def create_plugin(request: Request, user: Changing, spec: str = Form("")) -> Response:
    async with runtime_of(request).db.transaction() as session:
        tools = runtime_of(request).tools
        plugin = await service.create_plugin(
            session, user.workspace_id, _json_object(spec, "The spec"), guard=tools.guard, box=tools.box
        )
    return redirect(f"/console/plugins/{plugin.id}", done="created")


async def _plugin_page(request: Request, tool_id: str, user: Any, **context: Any) -> Response:
    async with runtime_of(request).db.session() as session:
        plugin = await service.get_plugin(session, tool_id, user.workspace_id)
        apps = await app_service.list_apps(session, user.workspace_id)
    spec = opened_spec(plugin.spec, None)  # the service token stays sealed
    return await page(
        request, "plugin_detail.html", plugin=plugin, spec=spec,
        spec_json=json.dumps(public_spec(spec), ensure_ascii=False, indent=2),
        used_by=[a for a in apps if tool_id in a.draft.plugin_ids or (a.published and tool_id in a.published.plugin_ids)],
        **context,
    )


@router.get("/{tool_id}")
async def show_plugin(request: Request, tool_id: str, user: SignedIn, done: str = "") -> Response:
    return await _plugin_page(request, tool_id, user, done=done, arguments="{}")


@router.post("/{tool_id}/edit")
async def edit_plugin(
    request: Request,
    tool_id: str,
    user: Changing,
    url: str = Form(""),
    description: str = Form(""),
    headers: str = Form("{}"),
    auth_type: str = Form("none"),
    token: str = Form(""),
) -> Response:
    changes: dict[str, Any] = {
        "url": url.strip(),
        "description": description.strip(),
        "headers": _json_object(headers, "The headers"),
    }
    tools = runtime_of(request).tools
    async with runtime_of(request).db.transaction() as session:
        plugin = await service.get_plugin(session, tool_id, user.workspace_id)
        auth = opened_spec(plugin.spec, None).auth.model_dump(exclude={"token"}) | {"type": auth_type}
        if token:  # empty: the stored token stays (the service keeps it)
            auth["token"] = token
        await service.update_plugin(session, plugin, changes | {"auth": auth}, guard=tools.guard, box=tools.box)
    return redirect(f"/console/plugins/{tool_id}", done="saved")


@router.post("/{tool_id}/test")
async def test_plugin(request: Request, tool_id: str, user: Changing, arguments: str = Form("{}")) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        plugin = await service.get_plugin(session, tool_id, user.workspace_id)
    observation = await service.test_plugin(
        plugin, runtime.tools.guard, _json_object(arguments, "The arguments"), box=runtime.tools.box
    )
    return await _plugin_page(request, tool_id, user, arguments=arguments, observation=observation)


@router.post("/{tool_id}/delete")
async def delete_plugin(request: Request, tool_id: str, user: Changing) -> Response:
    async with runtime_of(request).db.transaction() as session:
        plugin = await service.get_plugin(session, tool_id, user.workspace_id)
        await service.delete_plugin(session, plugin)
    return redirect("/console/plugins", done="deleted")
