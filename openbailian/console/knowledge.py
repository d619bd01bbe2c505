"""Knowledge bases: create, upload documents (one request per file, with progress), watch
their status, retry and delete them, and test retrieval (命中测试)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from openbailian.console.web import Changing, ConsoleRoute, SignedIn, page, redirect, render_fragment, runtime_of
from openbailian.errors import InvalidParameter
from openbailian.files.safety import SafetyLimits
from openbailian.knowledge.ingest import TERMINAL
from openbailian.services import knowledge as service

__all__ = ["router"]

router = APIRouter(prefix="/console/knowledge", route_class=ConsoleRoute, include_in_schema=False)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("，", ",").split(",") if part.strip()]


def _pairs(text: str) -> dict[str, str]:
    """``key=value, key2=value2`` (the retrieval test's filter field)."""
    pairs: dict[str, str] = {}
    for part in _split(text):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InvalidParameter(f"Filter '{part}' is not key=value")
        pairs[key.strip()] = value.strip()
    return pairs


@router.get("")
async def list_bases(request: Request, user: SignedIn, done: str = "") -> Response:
    async with runtime_of(request).db.session() as session:
        bases = await service.list_bases(session, user.workspace_id)
    return await page(request, "knowledge.html", bases=bases, done=done)


@router.post("")
async def create_base(
    request: Request, user: Changing, name: str = Form(...), kind: str = Form("unstructured"),
    description: str = Form(""),
) -> Response:
    async with runtime_of(request).db.transaction() as session:
        base = await service.create_base(
            session, workspace_id=user.workspace_id, name=name, kind=kind, description=description
        )
    return redirect(f"/console/knowledge/{base.id}", done="created")


@router.get("/{base_id}")
async def show_base(
    request: Request, base_id: str, user: SignedIn, q: str = "", top_k: int = 5, tags: str = "",
    meta: str = "", done: str = "",
) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        base = await service.get_base(session, base_id, user.workspace_id)
        documents = await service.list_documents(session, base_id, user.workspace_id)
    hits = None
    if q.strip():
        retriever = runtime.knowledge.retriever
        options: dict[str, object] = {"pipeline_ids": [base.id]}
        if _split(tags):
            options["tags"] = _split(tags)
        if _pairs(meta):  # a structured base filters on its columns, a document base on metadata
            options["structured_filter" if base.kind == "structured" else "metadata_filter"] = _pairs(meta)
        search = await service.parse_search_options(runtime.db, user.workspace_id, [], options, retriever)
        hits = await service.search(retriever, search, q, top_k=max(1, min(top_k, 50))) if search else []
    return await page(
        request, "kb_detail.html", base=base, documents=documents, terminal=TERMINAL, q=q, top_k=top_k, tags=tags,
        meta=meta, hits=hits, done=done,
    )


@router.get("/{base_id}/documents")
async def documents_fragment(request: Request, base_id: str, user: SignedIn) -> Response:
    """The documents table again (the page polls it while documents are being processed)."""
    async with runtime_of(request).db.session() as session:
        base = await service.get_base(session, base_id, user.workspace_id)
        documents = await service.list_documents(session, base_id, user.workspace_id)
    html = render_fragment(request, "_documents.html", base=base, documents=documents, terminal=TERMINAL)
    pending = any(d.status not in TERMINAL for d in documents)
    return JSONResponse({"html": html, "pending": pending}, headers={"Cache-Control": "no-store"})


@router.post("/{base_id}/upload", status_code=201)
async def upload(
    request: Request, base_id: str, user: Changing, file: UploadFile = File(...), tags: str = Form("")
) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    async with runtime.db.session() as session:
        base = await service.get_base(session, base_id, user.workspace_id)
    name = file.filename or ""
    service.check_upload(base, name, file.size or 0, settings.knowledge_max_file_bytes)
    staging = settings.home / "knowledge" / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=staging, delete=False) as handle:
        shutil.copyfileobj(file.file, handle, 1 << 20)
    staged = Path(handle.name)
    try:
        [document] = await service.upload_documents(
            runtime.db, base, [(name, staged)], store=runtime.knowledge.store,
            max_bytes=settings.knowledge_max_file_bytes, limits=SafetyLimits.of(settings), tags=_split(tags),
        )
    finally:
        staged.unlink(missing_ok=True)
    runtime.knowledge.worker.wake()
    return JSONResponse({"file_id": document.id, "name": document.name, "status": document.status}, 201)


@router.post("/documents/{document_id}/retry")
async def retry(request: Request, document_id: str, user: Changing) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        document = await service.reindex_document(session, document_id, user.workspace_id)
    runtime.knowledge.worker.wake()
    return redirect(f"/console/knowledge/{document.base_id}")


@router.post("/documents/{document_id}/delete")
async def delete_document(request: Request, document_id: str, user: Changing) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        document = await service.get_document(session, document_id, user.workspace_id)
        base_id = document.base_id
        await service.delete_document(session, document_id, user.workspace_id, runtime.knowledge.store)
    return redirect(f"/console/knowledge/{base_id}", done="deleted")


@router.post("/{base_id}/delete")
async def delete_base(request: Request, base_id: str, user: Changing) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        await service.delete_base(session, base_id, user.workspace_id, runtime.knowledge.store)
    runtime.knowledge.retriever.index.forget(base_id)
    return redirect("/console/knowledge", done="deleted")
