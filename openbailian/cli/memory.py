"""``openbailian memory …``: long-term memories and their items, straight on the database."""

from __future__ import annotations

from typing import Any

import typer

from openbailian.api.manage.views import item_view, memory_view
from openbailian.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    emit,
    print_table,
    run_with_runtime,
)
from openbailian.runtime import Runtime
from openbailian.services import memory as memory_service

__all__ = ["app"]

app = typer.Typer(help="Long-term memory: memory bodies and what they remember.", no_args_is_help=True)

AnyWorkspace = typer.Option(None, "--workspace", "-w", help="Only this workspace (default: all).")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print_table(columns, [[row.get(c, "") for c in columns] for row in rows])


@app.command("create")
def create(
    workspace: str = WorkspaceOption,
    description: str = typer.Option("", "--description", "-d"),
    as_json: bool = JsonOption,
) -> None:
    """Create a memory; pass its memory_id in calls of apps with memory on."""

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.transaction() as session:
            return memory_view(await memory_service.create_memory(session, workspace, description))

    view = run_with_runtime(work)
    emit(view, as_json, lambda: console.print(f"memory_id: [bold]{view['memory_id']}[/bold]"))


@app.command("list")
def list_(workspace: str | None = AnyWorkspace, as_json: bool = JsonOption) -> None:
    """List memory bodies (memory_id), all workspaces or one."""
    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.db.session() as session:
            page = await memory_service.list_memories(session, workspace)
            return [memory_view(m) for m in page.items]

    rows = run_with_runtime(work)
    emit({"memories": rows}, as_json, lambda: _table(rows, ["memory_id", "workspace", "items", "description"]))


@app.command("delete")
def delete(memory_id: str, workspace: str | None = AnyWorkspace, as_json: bool = JsonOption) -> None:
    """Delete a memory and everything it remembers."""

    async def work(runtime: Runtime) -> None:
        async with runtime.db.transaction() as session:
            await memory_service.delete_memory(session, memory_id, workspace)

    run_with_runtime(work)
    emit({"memory_id": memory_id, "deleted": True}, as_json, lambda: console.print(f"Deleted {memory_id}"))


@app.command("items")
def items(memory_id: str, workspace: str | None = AnyWorkspace, as_json: bool = JsonOption) -> None:
    """What a memory remembers."""

    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.db.session() as session:
            page = await memory_service.list_items(session, memory_id, workspace)
            return [item_view(i) for i in page.items]

    rows = run_with_runtime(work)
    emit({"memory_id": memory_id, "items": rows}, as_json, lambda: _table(rows, ["id", "content", "source", "updated_at"]))


@app.command("add")
def add(
    memory_id: str,
    content: str,
    subject: str | None = typer.Option(None, help="What the fact is about (default: text before a colon)."),
    workspace: str | None = AnyWorkspace,
    as_json: bool = JsonOption,
) -> None:
    """Add an item by hand."""

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.transaction() as session:
            return item_view(await memory_service.add_item(session, memory_id, workspace, content, subject))

    view = run_with_runtime(work)
    emit(view, as_json, lambda: console.print(f"Added item {view['id']}"))


@app.command("update")
def update(
    memory_id: str,
    item_id: str,
    content: str,
    subject: str | None = typer.Option(None),
    workspace: str | None = AnyWorkspace,
    as_json: bool = JsonOption,
) -> None:
    """Correct an item."""

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.transaction() as session:
            return item_view(
                await memory_service.update_item(session, memory_id, item_id, workspace, content, subject)
            )

    view = run_with_runtime(work)
    emit(view, as_json, lambda: console.print(f"Updated item {view['id']}"))


@app.command("forget")
def forget(
    memory_id: str, item_id: str, workspace: str | None = AnyWorkspace, as_json: bool = JsonOption
) -> None:
    """Delete one item."""

    async def work(runtime: Runtime) -> None:
        async with runtime.db.transaction() as session:
            await memory_service.delete_item(session, memory_id, item_id, workspace)

    run_with_runtime(work)
    emit({"id": item_id, "deleted": True}, as_json, lambda: console.print(f"Deleted item {item_id}"))
