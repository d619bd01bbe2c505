"""``openbailian files upload|describe|list|delete``: session files.

``upload`` does the three steps of the OpenAPI (ApplyFileUploadLease, the PUT
to the signed URL, AddFile) and waits for FILE_IS_READY (or a failure),
showing the status as it moves. Without ``--url`` it works in-process on the
database of OPENBAILIAN_HOME; with ``--url`` (and an API key) against a server.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from openbailian.api.manage.views import file_view
from openbailian.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    emit,
    fail,
    print_table,
    run_with_runtime,
)
from openbailian.files.status import FINAL, FileStatus
from openbailian.files.system import SessionFiles
from openbailian.runtime import Runtime
from openbailian.services import files as file_service

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(help="Session files: upload, then name them in rag_options.session_file_ids.", no_args_is_help=True)

UrlOption = typer.Option(None, "--url", help="Server base URL; without it, work on OPENBAILIAN_HOME directly.")
KeyOption = typer.Option(None, "--api-key", envvar="DASHSCOPE_API_KEY", help="sk-… key (with --url).")
STEPS = [
    FileStatus.INIT, FileStatus.SAFE_CHECKING, FileStatus.PARSING, FileStatus.PARSE_SUCCESS,
    FileStatus.INDEX_BUILDING, FileStatus.INDEX_BUILD_SUCCESS, FileStatus.FILE_IS_READY,
]


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, 1024 * 1024):
            yield chunk


class _Display:
    """A progress bar over the status machine, silent with --json."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.fields[name]}"), BarColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=console, disable=quiet, transient=False,
        )
        self.task = self.progress.add_task("upload", total=len(STEPS), name=name, status="UPLOADING")

    def __enter__(self) -> _Display:
        self.progress.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.progress.__exit__(kind, error, trace)

    def show(self, status: str) -> None:
        done = STEPS.index(FileStatus(status)) + 1 if status in {s.value for s in STEPS} else None
        style = "red" if status in FINAL and status != FileStatus.FILE_IS_READY else "green"
        self.progress.update(self.task, completed=done, status=f"[{style}]{status}")  # None: unchanged


async def _upload_local(runtime: Runtime, path: Path, workspace: str, display: _Display, timeout: float) -> dict[str, Any]:
    from openbailian.files.uploads import accept_upload

    files = runtime.files
    grant = await file_service.apply_lease(
        files, workspace, category_id="default", category_type="SESSION_FILE",
        file_name=path.name, md5=_md5(path), size_in_bytes=path.stat().st_size, base_url="http://localhost",
    )
    await accept_upload(files, grant.lease_id, content_length=str(path.stat().st_size), body=_chunks(path))
    row = await file_service.add_file(
        files, workspace, lease_id=grant.lease_id, category_id="default", category_type="SESSION_FILE"
    )
    deadline = time.monotonic() + timeout
    while True:  # the runtime's aclose stops the processing when this returns
        row = await file_service.describe_file(files, workspace, row.id)
        display.show(row.status)
        if row.status in FINAL or time.monotonic() > deadline:
            return file_view(row)
        await asyncio.sleep(0.2)


def _upload_remote(url: str, api_key: str, path: Path, display: _Display, timeout: float) -> dict[str, Any]:
    with httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=120) as client:
        def call(operation: str, body: dict[str, Any]) -> dict[str, Any]:
            answer = client.post(f"/manage/v1/files/{operation}", json=body).json()
            if not answer.get("Success"):
                fail(answer.get("Message", "request failed"), code=answer.get("Code", "Error"))
            data: dict[str, Any] = answer["Data"]
            return data

        grant = call("ApplyFileUploadLease", {
            "CategoryId": "default", "CategoryType": "SESSION_FILE", "FileName": path.name,
            "Md5": _md5(path), "SizeInBytes": path.stat().st_size,
        })
        with path.open("rb") as handle:
            put = httpx.put(grant["Param"]["Url"], content=handle, headers=grant["Param"]["Headers"], timeout=600)
        if put.status_code != 200:
            fail(put.json().get("Message", put.text), code=put.json().get("Code", "UploadFailed"))
        added = call("AddFile", {
            "LeaseId": grant["FileUploadLeaseId"], "CategoryId": "default", "CategoryType": "SESSION_FILE",
        })
        deadline = time.monotonic() + timeout
        while True:
            view = call("DescribeFile", {"FileId": added["FileId"]})
            display.show(view["Status"])
            if view["Status"] in FINAL or time.monotonic() > deadline:
                return view
            time.sleep(0.3)


@app.command("upload")
def upload(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    workspace: str = WorkspaceOption,
    url: str | None = UrlOption,
    api_key: str | None = KeyOption,
    timeout: float = typer.Option(600.0, help="Seconds to wait for FILE_IS_READY."),
    as_json: bool = JsonOption,
) -> None:
    """Upload a file (lease → PUT → AddFile) and wait until it is ready."""
    with _Display(path.name, as_json) as display:
        if url:
            if not api_key:
                fail("--api-key (or DASHSCOPE_API_KEY) is needed with --url", code="InvalidApiKey")
            view = _upload_remote(url, api_key or "", path, display, timeout)
        else:
            view = run_with_runtime(lambda runtime: _upload_local(runtime, path, workspace, display, timeout))
    data = {"file_id": view["FileId"], "status": view["Status"], "reason": view.get("FailureReason")}
    emit(data, as_json, lambda: console.print(
        f"{data['file_id']}  [bold]{data['status']}[/bold]" + (f"  {data['reason']}" if data["reason"] else "")
    ))
    if view["Status"] != FileStatus.FILE_IS_READY:
        raise typer.Exit(1)


def _local(work: Callable[[SessionFiles], Awaitable[T]]) -> T:
    async def run(runtime: Runtime) -> T:
        return await work(runtime.files)

    return run_with_runtime(run)


@app.command("describe")
def describe(file_id: str, workspace: str = WorkspaceOption, as_json: bool = JsonOption) -> None:
    """Status (and failure reason) of a session file."""
    async def work(files: SessionFiles) -> dict[str, Any]:
        return file_view(await file_service.describe_file(files, workspace, file_id))

    view = _local(work)
    emit(view, as_json)


@app.command("list")
def list_files(workspace: str = WorkspaceOption, limit: int = typer.Option(50, min=1, max=200), as_json: bool = JsonOption) -> None:
    """The session files of a workspace, newest first."""
    async def work(files: SessionFiles) -> tuple[list[dict[str, Any]], int]:
        page = await file_service.list_files(files, workspace, max_results=limit, category_type="SESSION_FILE")
        return [file_view(r) for r in page.files], page.total

    views, total = _local(work)

    def human() -> None:
        print_table(
            ["FileId", "FileName", "Status", "SizeInBytes", "ExpireTime"],
            [[v["FileId"], v["FileName"], v["Status"], v["SizeInBytes"], v["ExpireTime"]] for v in views],
        )

    emit({"files": views, "total": total}, as_json, human)


@app.command("delete")
def delete(file_id: str, workspace: str = WorkspaceOption, as_json: bool = JsonOption) -> None:
    """Delete a session file now: its record, bytes and index entries."""
    async def work(files: SessionFiles) -> None:
        await file_service.delete_file(files, workspace, file_id)

    _local(work)
    emit({"file_id": file_id, "deleted": True}, as_json, lambda: console.print(f"Deleted {file_id}"))
