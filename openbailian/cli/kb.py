"""``openbailian kb …``: knowledge bases and their documents, straight against the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from openbailian.api.manage.views import base_view, document_view
from openbailian.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    emit,
    fail,
    print_table,
    run_with_runtime,
)
from openbailian.files.safety import SafetyLimits
from openbailian.knowledge.ingest import TERMINAL, Status, ingest_together
from openbailian.runtime import Runtime
from openbailian.services import knowledge as service

__all__ = ["app"]

app = typer.Typer(
    help="Knowledge bases: create, add documents, list, describe, re-index, delete.", no_args_is_help=True
)

# How far along the pipeline each status is, for the progress bars.
_STEPS = {
    Status.INIT: 0, Status.PARSING: 1, Status.PARSE_SUCCESS: 2, Status.INDEX_BUILDING: 3,
    Status.INDEX_BUILD_SUCCESS: 4, Status.FILE_IS_READY: 5, Status.PARSE_FAILED: 5,
    Status.INDEX_BUILDING_FAILED: 5,
}


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print_table(columns, [[row.get(c) for c in columns] for row in rows])


# Commands on an existing base or document find it by id alone; --workspace is then a check.
CheckWorkspace = typer.Option(
    None, "--workspace", "-w", help="Refuse unless the base or file is in this workspace (default: any)."
)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="A name for the knowledge base."),
    workspace: str = WorkspaceOption,
    structured: bool = typer.Option(False, "--structured", help="Tables (.xlsx/.csv): one record per row."),
    description: str = typer.Option("", help="What the base holds."),
    as_json: bool = JsonOption,
) -> None:
    """Create a knowledge base; prints its id (the pipeline id calls name)."""

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.transaction() as session:
            base = await service.create_base(
                session, workspace_id=workspace, name=name,
                kind="structured" if structured else "unstructured", description=description,
            )
        return base_view(base)

    view = run_with_runtime(work)
    emit({"index_id": view["index_id"]} if as_json else view, as_json,
         lambda: console.print(f"Knowledge base [bold]{view['index_id']}[/bold] ({view['kind']}) created"))


@app.command("list")
def list_(workspace: str = WorkspaceOption, as_json: bool = JsonOption) -> None:
    """List the workspace's knowledge bases."""

    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.db.session() as session:
            return [base_view(b) for b in await service.list_bases(session, workspace)]

    rows = run_with_runtime(work)
    emit({"indexes": rows}, as_json, lambda: _table(rows, ["index_id", "name", "kind", "created_at"]))


@app.command("delete")
def delete(index_id: str, workspace: str | None = CheckWorkspace, as_json: bool = JsonOption) -> None:
    """Delete a knowledge base with all its documents."""

    async def work(runtime: Runtime) -> None:
        async with runtime.db.transaction() as session:
            await service.delete_base(session, index_id, workspace, runtime.knowledge.store)

    run_with_runtime(work)
    emit({"deleted": index_id}, as_json, lambda: console.print(f"Deleted knowledge base {index_id}"))


def _parse_meta(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--meta '{pair}' is not KEY=VALUE", code="InvalidParameter")
        values[key.strip()] = value
    return values


@app.command("add")
def add(
    index_id: str,
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    tag: list[str] = typer.Option([], "--tag", help="A tag (repeatable)."),
    meta: list[str] = typer.Option([], "--meta", help="KEY=VALUE metadata (repeatable)."),
    wait: bool = typer.Option(False, "--wait", help="Ingest now and return when each file is ready or failed."),
    workspace: str | None = CheckWorkspace,
    as_json: bool = JsonOption,
) -> None:
    """Add documents; without --wait a running server ingests them in the background."""
    metadata = _parse_meta(meta)

    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        settings = runtime.settings
        async with runtime.db.session() as session:
            base = await service.get_base(session, index_id, workspace)
        documents = await service.upload_documents(  # refuses all before storing any
            runtime.db, base, [(path.name, path) for path in files], store=runtime.knowledge.store,
            max_bytes=settings.knowledge_max_file_bytes, limits=SafetyLimits.of(settings), tags=tag,
            metadata=metadata, move=False,
        )
        results = {d.id: {"file_id": d.id, "name": d.name, "status": d.status} for d in documents}
        if wait:
            await _ingest(runtime, workspace, results, show=not as_json)
        return list(results.values())

    rows = run_with_runtime(work)
    _emit_files(rows, as_json)


def _emit_files(rows: list[dict[str, Any]], as_json: bool) -> None:
    """Prints the files; exits 1 when one of them failed (scripts check the code)."""
    emit({"files": rows}, as_json, lambda: _table(rows, ["file_id", "name", "status", "reason"]))
    if any(r["status"] in {Status.PARSE_FAILED, Status.INDEX_BUILDING_FAILED} for r in rows):
        raise typer.Exit(1)


async def _ingest(runtime: Runtime, workspace: str | None, results: dict[str, dict[str, Any]], *, show: bool) -> None:
    ingestor = runtime.knowledge.ingestor
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TextColumn("{task.fields[chunks]}"), TimeRemainingColumn(), console=console, disable=not show,
        transient=False,
    ) as progress:
        # The first row counts finished files; its time left is estimated from their pace. A
        # file's row counts its steps until its chunks are embedded, then its chunks, so one big
        # file has a time left too.
        overall = progress.add_task(f"all {len(results)} files", total=len(results), status="", chunks="")
        tasks = {
            file_id: progress.add_task(row["name"], total=5, status=row["status"], chunks="")
            for file_id, row in results.items()
        }
        chunks_of: dict[str, int] = {}  # files whose bar counts chunks now: their chunks in all

        def on_status(file_id: str, status: str) -> None:
            if file_id not in tasks:
                return
            if file_id in chunks_of:  # a final status fills the chunk bar
                done = chunks_of[file_id] if status in TERMINAL else None
                progress.update(tasks[file_id], completed=done, status=status)
            else:
                progress.update(tasks[file_id], completed=_STEPS.get(status, 0), status=status)
            if status in TERMINAL:
                progress.advance(overall)

        def on_chunks(file_id: str, embedded: int, total: int) -> None:
            if file_id not in tasks:
                return
            if file_id not in chunks_of:  # new units: the pace so far would mislead the time left
                chunks_of[file_id] = total
                progress.reset(tasks[file_id], total=total, completed=0)
            progress.update(tasks[file_id], completed=embedded, chunks=f"{embedded}/{total} chunks")

        ingestor.listeners.append(on_status)
        ingestor.progress_listeners.append(on_chunks)
        try:
            await ingest_together(ingestor, list(results))
        finally:
            ingestor.listeners.remove(on_status)
            ingestor.progress_listeners.remove(on_chunks)
    async with runtime.db.session() as session:
        for file_id, row in results.items():
            document = await service.get_document(session, file_id, workspace)
            row["status"] = document.status
            if document.status in TERMINAL and document.reason:
                row["reason"] = document.reason


@app.command("docs")
def docs(index_id: str, workspace: str | None = CheckWorkspace, as_json: bool = JsonOption) -> None:
    """List a knowledge base's documents with their status."""

    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.db.session() as session:
            return [document_view(d) for d in await service.list_documents(session, index_id, workspace)]

    rows = run_with_runtime(work)
    emit({"files": rows}, as_json, lambda: _table(rows, ["file_id", "name", "status", "reason", "chunks", "updated_at"]))


@app.command("rm")
def remove(file_id: str, workspace: str | None = CheckWorkspace, as_json: bool = JsonOption) -> None:
    """Delete one document (and its chunks)."""

    async def work(runtime: Runtime) -> None:
        async with runtime.db.transaction() as session:
            await service.delete_document(session, file_id, workspace, runtime.knowledge.store)

    run_with_runtime(work)
    emit({"deleted": file_id}, as_json, lambda: console.print(f"Deleted file {file_id}"))


@app.command("show")
def show(file_id: str, workspace: str | None = CheckWorkspace, as_json: bool = JsonOption) -> None:
    """Describe one document: status and its history, reason, pages, chunks, tags, metadata."""

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.session() as session:
            return document_view(await service.get_document(session, file_id, workspace))

    view = run_with_runtime(work)
    emit(view, as_json, lambda: _show_document(view))


def _show_document(view: dict[str, Any]) -> None:
    keys = ("file_id", "index_id", "name", "status", "reason", "pages", "chunks", "tags", "metadata",
            "created_at", "updated_at")
    rows = [[key, view[key]] for key in keys if view.get(key) not in (None, [], {})]
    if progress := view.get("progress"):
        eta = progress["eta_seconds"]
        left = "" if eta is None else f", about {eta:.0f} s left"
        rows.append(["progress", f"{progress['chunks_embedded']} of {progress['chunks_total']} chunks embedded{left}"])
    print_table(["field", "value"], rows, show_header=False)
    _table(view["history"], ["status", "at", "reason"])


@app.command("reindex")
def reindex(
    file_id: str,
    wait: bool = typer.Option(False, "--wait", help="Re-index now and return when the file is ready or failed."),
    workspace: str | None = CheckWorkspace,
    as_json: bool = JsonOption,
) -> None:
    """Parse and index a document again (after a failure, or a change of embedder or chunking)."""

    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.db.transaction() as session:
            document = await service.reindex_document(session, file_id, workspace)
        results = {document.id: {"file_id": document.id, "name": document.name, "status": document.status}}
        if wait:
            await _ingest(runtime, workspace, results, show=not as_json)
        return list(results.values())

    _emit_files(run_with_runtime(work), as_json)
