"""The ``ToolRunner`` for app calls: the app's plugins and built-ins, run safely.

``tools_for(call)`` offers the tools named in the app's ``plugin_ids``:
``builtin:calculator``, ``builtin:datetime``, and custom plugins of the
caller's workspace (a plugin deleted or from another workspace is skipped and
logged, so one stale id does not break the app). ``run`` merges
``user_defined_params[tool_id]`` into the request and sends
``user_defined_tokens[tool_id].user_token`` as the auth header; neither is
ever in the tool's schema, the observation, or a log line.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from openbailian.config import Settings
from openbailian.crypto import SecretBox, SecretUnreadable
from openbailian.engine.augment import CallContext, ToolSpec
from openbailian.providers.base import ToolCall
from openbailian.storage.db import Database
from openbailian.storage.memory_models import Plugin
from openbailian.tools.builtins import BUILTINS, is_builtin
from openbailian.tools.outbound import AllowList, OutboundGuard, Resolver
from openbailian.tools.plugin import PluginSpec, call_plugin, model_parameters, opened_spec

__all__ = ["PluginToolRunner", "PluginToolSpec"]

logger = logging.getLogger("openbailian.tools")


@dataclass(frozen=True, slots=True)
class PluginToolSpec(ToolSpec):
    """A ``ToolSpec`` that also knows its plugin (``builtin:…`` or a plugin's id)."""

    tool_id: str = ""


@dataclass(frozen=True, slots=True)
class _Tool:
    spec: PluginToolSpec
    plugin: PluginSpec | None  # None for a built-in


class PluginToolRunner:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._db = db
        self.guard = OutboundGuard(AllowList.parse(settings.outbound_allow), resolver)
        self.box = SecretBox.from_settings(settings)  # opens the plugins' sealed service tokens
        self._transport = transport

    async def tools_for(self, context: CallContext) -> list[ToolSpec]:
        return [tool.spec for tool in (await self._tools(context)).values()]

    async def run(self, context: CallContext, tool_call: ToolCall) -> str:
        try:
            tool = (await self._tools(context)).get(tool_call.name)
            if tool is None:
                return f"Error: there is no tool named {tool_call.name!r}"
            if tool.plugin is None:
                return await asyncio.to_thread(BUILTINS[tool.spec.tool_id].run, tool_call.arguments)
            return await call_plugin(
                tool.plugin,
                tool_call.arguments,
                guard=self.guard,
                passthrough=_mapping(context.call.user_defined_params.get(tool.spec.tool_id)),
                user_token=_user_token(context.call.user_defined_tokens.get(tool.spec.tool_id)),
                transport=self._transport,
            )
        except Exception as error:  # never let a tool crash the answer
            logger.warning("tool %s failed: %s", tool_call.name, type(error).__name__)
            return f"Error: the tool failed ({type(error).__name__})"

    async def _tools(self, context: CallContext) -> dict[str, _Tool]:
        ids = list(dict.fromkeys(context.config.plugin_ids))
        if not ids:
            return {}
        plugins = await self._load([i for i in ids if not is_builtin(i)], context.call.workspace_id)
        tools: dict[str, _Tool] = {}
        for tool_id in ids:
            tool = self._tool(tool_id, plugins.get(tool_id), tools)
            if tool is None:
                logger.warning("app %s: plugin %s is unavailable; skipped", context.call.app_id, tool_id)
            else:
                tools[tool.spec.name] = tool
        return tools

    def _tool(self, tool_id: str, plugin: PluginSpec | None, taken: dict[str, _Tool]) -> _Tool | None:
        if is_builtin(tool_id):
            builtin = BUILTINS.get(tool_id)
            if builtin is None:
                return None
            name, title, description, parameters = (
                builtin.function, builtin.title, builtin.description, builtin.parameters
            )
        elif plugin is not None:
            name, title = plugin.name, plugin.display_name
            description, parameters = plugin.description, model_parameters(plugin)
        else:
            return None
        unique, n = name, 2
        while unique in taken:  # two plugins with one function name: keep both callable
            unique, n = f"{name}_{n}", n + 1
        spec = PluginToolSpec(
            name=unique, description=description, parameters=parameters, tool_id=tool_id, title=title
        )
        return _Tool(spec=spec, plugin=plugin)

    async def _load(self, ids: list[str], workspace_id: str) -> dict[str, PluginSpec]:
        if not ids:
            return {}
        async with self._db.session() as session:
            rows = await session.scalars(
                select(Plugin).where(Plugin.id.in_(ids), Plugin.workspace_id == workspace_id)
            )
            found = {row.id: row.spec for row in rows}
        specs = {}
        for tool_id, spec in found.items():
            try:
                specs[tool_id] = opened_spec(spec, self.box)
            except SecretUnreadable:  # sealed with another server key: unusable, skipped
                logger.warning("plugin %s: its service token cannot be opened with this server key", tool_id)
        return specs


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _user_token(value: Any) -> str | None:
    token = value.get("user_token") if isinstance(value, dict) else None
    return token if isinstance(token, str) else None
