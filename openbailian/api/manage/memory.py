"""Long-term memory management (Bailian's CreateMemory, ListMemories, DeleteMemory,
CreateMemoryNode, ListMemoryNodes, UpdateMemoryNode, DeleteMemoryNode) as REST:

- ``POST   /manage/v1/memories`` ``{"description"}`` → ``{"memory_id", "memoryId", …}``
- ``GET    /manage/v1/memories`` → ``{"memories": [...]}``
- ``GET    /manage/v1/memories/{memory_id}``
- ``DELETE /manage/v1/memories/{memory_id}``
- ``POST   /manage/v1/memories/{memory_id}/nodes`` ``{"content", "subject"?}`` → the node
- ``GET    /manage/v1/memories/{memory_id}/nodes`` → ``{"memory_id", "items": [...]}``
- ``PATCH  /manage/v1/memories/{memory_id}/nodes/{node_id}`` ``{"content", "subject"?}``
- ``DELETE /manage/v1/memories/{memory_id}/nodes/{node_id}``
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from openbailian.api.deps import CurrentCaller, RuntimeDep
from openbailian.api.manage.views import item_view, memory_view
from openbailian.services import memory as memory_service

__all__ = ["router"]

router = APIRouter(prefix="/manage/v1", tags=["memory"])


class MemoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(default="", max_length=memory_service.MAX_DESCRIPTION_CHARS)


class NodeWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1)
    subject: str | None = Field(default=None, max_length=200)


@router.post("/memories", status_code=201)
async def create_memory(body: MemoryCreate, caller: CurrentCaller, runtime: RuntimeDep) -> dict[str, Any]:
    async with runtime.db.transaction() as session:
        memory = await memory_service.create_memory(session, caller.workspace_id, body.description)
    return memory_view(memory)


@router.get("/memories")
async def list_memories(caller: CurrentCaller, runtime: RuntimeDep) -> dict[str, Any]:
    async with runtime.db.session() as session:
        page = await memory_service.list_memories(session, caller.workspace_id)
    return {"memories": [memory_view(m) for m in page.items]}


@router.get("/memories/{memory_id}")
async def get_memory(memory_id: str, caller: CurrentCaller, runtime: RuntimeDep) -> dict[str, Any]:
    async with runtime.db.session() as session:
        return memory_view(await memory_service.get_memory(session, memory_id, caller.workspace_id))


@router.delete("/memories/{memory_id}", status_code=204)
async def delete_memory(memory_id: str, caller: CurrentCaller, runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as session:
        await memory_service.delete_memory(session, memory_id, caller.workspace_id)
    return Response(status_code=204)


@router.post("/memories/{memory_id}/nodes", status_code=201)
async def create_node(
    memory_id: str, body: NodeWrite, caller: CurrentCaller, runtime: RuntimeDep
) -> dict[str, Any]:
    async with runtime.db.transaction() as session:
        item = await memory_service.add_item(
            session, memory_id, caller.workspace_id, body.content, body.subject
        )
    return item_view(item)


@router.get("/memories/{memory_id}/nodes")
async def list_nodes(memory_id: str, caller: CurrentCaller, runtime: RuntimeDep) -> dict[str, Any]:
    async with runtime.db.session() as session:
        page = await memory_service.list_items(session, memory_id, caller.workspace_id)
    return {"memory_id": memory_id, "items": [item_view(i) for i in page.items]}


@router.patch("/memories/{memory_id}/nodes/{node_id}")
async def update_node(
    memory_id: str, node_id: str, body: NodeWrite, caller: CurrentCaller, runtime: RuntimeDep
) -> dict[str, Any]:
    async with runtime.db.transaction() as session:
        item = await memory_service.update_item(
            session, memory_id, node_id, caller.workspace_id, body.content, body.subject
        )
    return item_view(item)


@router.delete("/memories/{memory_id}/nodes/{node_id}", status_code=204)
async def delete_node(
    memory_id: str, node_id: str, caller: CurrentCaller, runtime: RuntimeDep
) -> Response:
    async with runtime.db.transaction() as session:
        await memory_service.delete_item(session, memory_id, node_id, caller.workspace_id)
    return Response(status_code=204)
