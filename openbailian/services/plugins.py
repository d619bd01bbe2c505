"""Custom plugins: create, update, get, list, delete, test — for the management API and CLI.

A plugin belongs to one workspace and can only be linked to apps of that
workspace (:func:`check_plugin_ids`, for app create/update). Built-in plugins
(``builtin:calculator``, ``builtin:datetime``) need no record.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.crypto import SecretBox
from openbailian.errors import InvalidParameter, PluginNotFound
from openbailian.services.lookup import get_in_workspace
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.memory_models import Plugin
from openbailian.tools.builtins import BUILTINS, is_builtin
from openbailian.tools.outbound import OutboundGuard
from openbailian.tools.plugin import (
    call_plugin,
    check_plugin_url,
    opened_spec,
    parse_spec,
    public_spec,
    sealed_spec,
)

__all__ = [
    "create_plugin",
    "update_plugin",
    "get_plugin",
    "list_plugins",
    "delete_plugin",
    "test_plugin",
    "check_plugin_ids",
    "plugin_view",
]


async def create_plugin(
    session: AsyncSession, workspace_id: str, data: dict[str, Any], *, guard: OutboundGuard, box: SecretBox
) -> Plugin:
    """A new plugin; its URL must pass the outbound rules, its service token is sealed."""
    spec = parse_spec(data)
    await check_plugin_url(spec, guard)
    await ensure_workspace(session, workspace_id)
    plugin = Plugin(id=uuid.uuid4().hex, workspace_id=workspace_id, name=spec.name, spec=sealed_spec(spec, box))
    session.add(plugin)
    await session.flush()
    return plugin


async def get_plugin(session: AsyncSession, tool_id: str, workspace_id: str | None) -> Plugin:
    return await get_in_workspace(
        session, Plugin, tool_id, workspace_id, missing=PluginNotFound, label="Plugin"
    )


async def list_plugins(session: AsyncSession, workspace_id: str | None) -> list[Plugin]:
    query = select(Plugin).order_by(Plugin.created_at)
    if workspace_id is not None:
        query = query.where(Plugin.workspace_id == workspace_id)
    return list(await session.scalars(query))


async def update_plugin(
    session: AsyncSession, plugin: Plugin, changes: dict[str, Any], *, guard: OutboundGuard, box: SecretBox
) -> Plugin:
    """Changes merge into the spec; ``auth`` is replaced whole (keeping a service token
    that is not given again)."""
    current = opened_spec(plugin.spec, box).model_dump(mode="json")
    auth = changes.get("auth")
    if isinstance(auth, dict) and auth.get("token") in (None, "***"):
        auth = {k: v for k, v in auth.items() if k != "token"}
        if auth.get("type", current["auth"]["type"]) == "service_token":
            auth["token"] = current["auth"].get("token")
        changes = {**changes, "auth": auth}
    spec = parse_spec({**current, **changes})
    await check_plugin_url(spec, guard)
    plugin.spec, plugin.name = sealed_spec(spec, box), spec.name
    await session.flush()
    return plugin


async def delete_plugin(session: AsyncSession, plugin: Plugin) -> None:
    await session.delete(plugin)
    await session.flush()


async def test_plugin(
    plugin: Plugin,
    guard: OutboundGuard,
    arguments: dict[str, Any],
    *,
    passthrough: dict[str, Any] | None = None,
    user_token: str | None = None,
    box: SecretBox,
) -> str:
    """Call the plugin once through the outbound guard; the observation a model would get."""
    if not isinstance(arguments, dict):
        raise InvalidParameter("arguments must be a JSON object")
    spec = opened_spec(plugin.spec, box)
    return await call_plugin(
        spec, arguments, guard=guard, passthrough=passthrough, user_token=user_token
    )


async def check_plugin_ids(session: AsyncSession, workspace_id: str, tool_ids: list[str]) -> None:
    """Raise unless every id is a built-in or a plugin of this workspace."""
    for tool_id in tool_ids:
        if is_builtin(tool_id):
            if tool_id not in BUILTINS:
                raise InvalidParameter(
                    f"Unknown built-in plugin '{tool_id}'; available: {', '.join(BUILTINS)}"
                )
            continue
        await get_plugin(session, tool_id, workspace_id)


def plugin_view(plugin: Plugin) -> dict[str, Any]:
    spec = opened_spec(plugin.spec, None)  # the token stays sealed: a view shows "***"
    return {
        "tool_id": plugin.id,
        "workspace": plugin.workspace_id,
        "name": plugin.name,
        "spec": public_spec(spec),
        "created_at": plugin.created_at.isoformat() if plugin.created_at else None,
        "updated_at": plugin.updated_at.isoformat() if plugin.updated_at else None,
    }
