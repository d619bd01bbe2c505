"""Long-term memory: memory bodies and their facts (view, add, edit, delete)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from openbailian.console.web import Changing, ConsoleRoute, SignedIn, page, redirect, runtime_of
from openbailian.services import memory as service

__all__ = ["router"]

router = APIRouter(prefix="/console/memory", route_class=ConsoleRoute, include_in_schema=False)


@router.get("")
async def list_memories(request: Request, user: SignedIn, done: str = "") -> Response:
    async with runtime_of(request).db.session() as session:
        memories = (await service.list_memories(session, user.workspace_id)).items
    return await page(request, "memory.html", memories=memories, done=done)


@router.post("")
async def create_memory(request: Request, user: Changing, description: str = Form("")) -> Response:
    async with runtime_of(request).db.transaction() as session:
        memory = await service.create_memory(session, user.workspace_id, description.strip())
    return redirect(f"/console/memory/{memory.id}", done="created")


@router.get("/{memory_id}")
async def show_memory(request: Request, memory_id: str, user: SignedIn, done: str = "") -> Response:
    async with runtime_of(request).db.session() as session:
        memory = await service.get_memory(session, memory_id, user.workspace_id)
        items = (await service.list_items(session, memory_id, user.workspace_id)).items
    return await page(request, "memory_detail.html", memory=memory, items=items, done=done)


@router.post("/{memory_id}/delete")
async def delete_memory(request: Request, memory_id: str, user: Changing) -> Response:
    async with runtime_of(request).db.transaction() as session:
        await service.delete_memory(session, memory_id, user.workspace_id)
    return redirect("/console/memory", done="deleted")


@router.post("/{memory_id}/items")
async def add_item(
    request: Request, memory_id: str, user: Changing, content: str = Form(""), subject: str = Form("")
) -> Response:
    async with runtime_of(request).db.transaction() as session:
        await service.add_item(session, memory_id, user.workspace_id, content, subject.strip() or None)
    return redirect(f"/console/memory/{memory_id}", done="saved")


@router.post("/{memory_id}/items/{item_id}")
async def update_item(
    request: Request, memory_id: str, item_id: str, user: Changing, content: str = Form(""),
    subject: str = Form(""),
) -> Response:
    async with runtime_of(request).db.transaction() as session:
        await service.update_item(session, memory_id, item_id, user.workspace_id, content, subject.strip() or None)
    return redirect(f"/console/memory/{memory_id}", done="saved")


@router.post("/{memory_id}/items/{item_id}/delete")
async def delete_item(request: Request, memory_id: str, item_id: str, user: Changing) -> Response:
    async with runtime_of(request).db.transaction() as session:
        await service.delete_item(session, memory_id, item_id, user.workspace_id)
    return redirect(f"/console/memory/{memory_id}", done="deleted")
