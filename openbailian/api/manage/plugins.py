"""Custom plugins (tools) of the caller's workspace:

- ``POST   /manage/v1/plugins`` (a plugin spec, see ``openbailian.tools.plugin``) → ``{"tool_id", …}``
- ``GET    /manage/v1/plugins`` → ``{"plugins": [...]}``
- ``GET    /manage/v1/plugins/{tool_id}``
- ``PATCH  /manage/v1/plugins/{tool_id}`` (fields to change)
- ``DELETE /manage/v1/plugins/{tool_id}``
- ``POST   /manage/v1/plugins/{tool_id}/test`` ``{"arguments", "user_defined_params"?,
  "user_token"?}`` → ``{"tool_id", "observation"}``: one call through the outbound guard.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field

from openbailian.api.deps import CurrentCaller, RuntimeDep
from openbailian.services import plugins as plugin_service

__all__ = ["router"]

router = APIRouter(prefix="/manage/v1", tags=["plugins"])


class PluginTest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arguments: dict[str, Any] = Field(default_factory=dict)
    user_defined_params: dict[str, Any] = Field(default_factory=dict)
    user_token: str | None = None


@router.post("/plugins", status_code=201)
async def create_plugin(
    caller: CurrentCaller, runtime: RuntimeDep, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    async with runtime.db.transaction() as session:
        plugin = await plugin_service.create_plugin(
            session, caller.workspace_id, body, guard=runtime.tools.guard, box=runtime.tools.box
        )
        return plugin_service.plugin_view(plugin)


@router.get("/plugins")
async def list_plugins(caller: CurrentCaller, runtime: RuntimeDep) -> dict[str, Any]:
    async with runtime.db.session() as session:
        rows = await plugin_service.list_plugins(session, caller.workspace_id)
        return {"plugins": [plugin_service.plugin_view(p) for p in rows]}


@router.get("/plugins/{tool_id}")
async def get_plugin(tool_id: str, caller: CurrentCaller, runtime: RuntimeDep) -> dict[str, Any]:
    async with runtime.db.session() as session:
        plugin = await plugin_service.get_plugin(session, tool_id, caller.workspace_id)
        return plugin_service.plugin_view(plugin)


@router.patch("/plugins/{tool_id}")
async def update_plugin(
    tool_id: str, caller: CurrentCaller, runtime: RuntimeDep, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    async with runtime.db.transaction() as session:
        plugin = await plugin_service.get_plugin(session, tool_id, caller.workspace_id)
        await plugin_service.update_plugin(session, plugin, body, guard=runtime.tools.guard, box=runtime.tools.box)
        return plugin_service.plugin_view(plugin)


@router.delete("/plugins/{tool_id}", status_code=204)
async def delete_plugin(tool_id: str, caller: CurrentCaller, runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as session:
        plugin = await plugin_service.get_plugin(session, tool_id, caller.workspace_id)
        await plugin_service.delete_plugin(session, plugin)
    return Response(status_code=204)


@router.post("/plugins/{tool_id}/test")
async def test_plugin(
    tool_id: str, body: PluginTest, caller: CurrentCaller, runtime: RuntimeDep
) -> dict[str, Any]:
    async with runtime.db.session() as session:
        plugin = await plugin_service.get_plugin(session, tool_id, caller.workspace_id)
    observation = await plugin_service.test_plugin(
        plugin,
        runtime.tools.guard,
        body.arguments,
        passthrough=body.user_defined_params,
        user_token=body.user_token,
        box=runtime.tools.box,
    )
    return {"tool_id": tool_id, "observation": observation}
