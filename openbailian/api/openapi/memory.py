"""The memory family of the Bailian OpenAPI (bare lower camel case ``{requestId, …}``).

CreateMemory, ListMemories, GetMemory, UpdateMemory, DeleteMemory, CreateMemoryNode,
ListMemoryNodes, GetMemoryNode, UpdateMemoryNode, DeleteMemoryNode over
``services/memory.py``; parameters in the query. A ``memoryId`` is the ``memory_id`` of
an application call.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from openbailian.api.deps import RuntimeDep
from openbailian.api.openapi.auth import OpenApiCaller
from openbailian.api.openapi.envelopes import Envelope, ok
from openbailian.api.openapi.params import Params, ParamsDep
from openbailian.api.openapi.routing import WORKSPACE, family_router
from openbailian.services import memory as memory_service
from openbailian.services.memory import MAX_DESCRIPTION_CHARS, MAX_PAGE_SIZE

__all__ = ["router"]

router = family_router(Envelope.BARE, "memory")

MEMORIES = WORKSPACE + "/memories"
MEMORY = MEMORIES + "/{memoryId}"
NODES = MEMORY + "/memoryNodes"
NODE = NODES + "/{memoryNodeId}"
DEFAULT_PAGE_SIZE = 20


def _paging(params: Params) -> tuple[int, str | None]:
    size = params.integer("maxResults", default=DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    assert size is not None
    return size, params.text("nextToken", allow_empty=False)


def _bare(request: Request, **fields: object) -> JSONResponse:
    return ok(request, Envelope.BARE, **fields)


@router.post(MEMORIES)
async def create_memory(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    description = params.text("description", default="", max_length=MAX_DESCRIPTION_CHARS) or ""
    async with runtime.db.transaction() as session:
        memory = await memory_service.create_memory(session, caller.workspace_id, description)
    return _bare(request, memoryId=memory.id)


@router.get(MEMORIES)
async def list_memories(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    size, token = _paging(params)
    async with runtime.db.session() as session:
        page = await memory_service.list_memories(session, caller.workspace_id, max_results=size, next_token=token)
    return _bare(
        request,
        workspaceId=caller.workspace_id,
        memories=[{"memoryId": m.id, "description": m.description} for m in page.items],
        maxResults=size,
        nextToken=page.next_token,
        totalCount=page.total,
    )


@router.get(MEMORY)
async def get_memory(request: Request, memoryId: str, caller: OpenApiCaller, runtime: RuntimeDep) -> JSONResponse:
    async with runtime.db.session() as session:
        memory = await memory_service.get_memory(session, memoryId, caller.workspace_id)
    return _bare(request, memoryId=memory.id, description=memory.description, workspaceId=memory.workspace_id)


@router.put(MEMORY)
async def update_memory(
    request: Request, memoryId: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    description = params.text("description", max_length=MAX_DESCRIPTION_CHARS)
    async with runtime.db.transaction() as session:
        if description is None:  # nothing to change, but the memory must exist
            await memory_service.get_memory(session, memoryId, caller.workspace_id)
        else:
            await memory_service.update_memory(session, memoryId, caller.workspace_id, description)
    return _bare(request)


@router.delete(MEMORY)
async def delete_memory(request: Request, memoryId: str, caller: OpenApiCaller, runtime: RuntimeDep) -> JSONResponse:
    async with runtime.db.transaction() as session:
        await memory_service.delete_memory(session, memoryId, caller.workspace_id)
    return _bare(request)


@router.post(NODES)
async def create_memory_node(
    request: Request, memoryId: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    content = params.required_text("content")
    async with runtime.db.transaction() as session:
        node = await memory_service.add_item(session, memoryId, caller.workspace_id, content)
    return _bare(request, memoryNodeId=node.id)


@router.get(NODES)
async def list_memory_nodes(
    request: Request, memoryId: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    size, token = _paging(params)
    async with runtime.db.session() as session:
        page = await memory_service.list_items(
            session, memoryId, caller.workspace_id, max_results=size, next_token=token
        )
    return _bare(
        request,
        memoryNodes=[{"memoryNodeId": n.id, "content": n.content} for n in page.items],
        maxResults=size,
        nextToken=page.next_token,
        totalCount=page.total,
    )


@router.get(NODE)
async def get_memory_node(
    request: Request, memoryId: str, memoryNodeId: str, caller: OpenApiCaller, runtime: RuntimeDep
) -> JSONResponse:
    async with runtime.db.session() as session:
        node = await memory_service.get_item(session, memoryId, memoryNodeId, caller.workspace_id)
    return _bare(
        request, memoryId=node.memory_id, memoryNodeId=node.id, content=node.content, workspaceId=caller.workspace_id
    )


@router.put(NODE)
async def update_memory_node(
    request: Request, memoryId: str, memoryNodeId: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    content = params.required_text("content")
    async with runtime.db.transaction() as session:
        await memory_service.update_item(session, memoryId, memoryNodeId, caller.workspace_id, content)
    return _bare(request)


@router.delete(NODE)
async def delete_memory_node(
    request: Request, memoryId: str, memoryNodeId: str, caller: OpenApiCaller, runtime: RuntimeDep
) -> JSONResponse:
    async with runtime.db.transaction() as session:
        await memory_service.delete_item(session, memoryId, memoryNodeId, caller.workspace_id)
    return _bare(request)
