"""The knowledge index family of the Bailian OpenAPI (``{RequestId, Success, Code, Message,
Status, Data}``), over ``services/indexes.py``: CreateIndex, SubmitIndexJob,
SubmitIndexAddDocumentsJob, GetIndexJobStatus, ListIndices, ListIndexDocuments,
DeleteIndexDocument, DeleteIndex, Retrieve. An index is a knowledge base (the same rows as
``openbailian kb`` and ``/manage/v1/knowledge``); its ``Id`` is a ``rag_options.pipeline_ids``
entry, its documents' ids are ``rag_options.file_ids``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from openbailian.api.deps import RuntimeDep
from openbailian.api.openapi.auth import OpenApiCaller
from openbailian.api.openapi.envelopes import Envelope, ok
from openbailian.api.openapi.params import Params, ParamsDep
from openbailian.api.openapi.routing import WORKSPACE, family_router
from openbailian.services import indexes as index_service
from openbailian.services import knowledge as kb

__all__ = ["router"]

router = family_router(Envelope.DATACENTER, "knowledge indexes")

INDEX = WORKSPACE + "/index"
SOURCE_TYPES = (index_service.SOURCE_FILES, index_service.SOURCE_CATEGORIES)
# CreateIndex parameters kept as sent (no equivalent here beyond being shown back).
KEPT = (
    "EmbeddingModelName", "RerankModelName", "RerankMinScore", "EnableRewrite", "SinkInstanceId", "SinkRegion",
    "CreateIndexType", "RerankMode", "RerankInstruct", "chunkMode", "enableHeaders", "knowledgeScene",
)


def _data(request: Request, data: Any) -> JSONResponse:
    return ok(request, Envelope.DATACENTER, data)


def _millis(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def _progress(progress: kb.IngestProgress | None) -> dict[str, Any] | None:
    """A document's embedding progress: not in Bailian's shape, which the SDKs' models ignore."""
    if progress is None:
        return None
    return {"ChunksEmbedded": progress.chunks_embedded, "ChunksTotal": progress.chunks_total,
            "EtaSeconds": progress.eta_seconds}


def _chunking(params: Params) -> kb.ChunkSettings:
    return kb.ChunkSettings(
        size=params.integer("ChunkSize"),
        overlap=params.integer("OverlapSize"),
        separator=params.text("Separator", allow_empty=False, max_length=32),
    )


def _paging(params: Params, size_name: str = "PageSize") -> tuple[int, int]:
    number = params.integer("PageNumber", default=1, minimum=1)
    size = params.integer(size_name, default=10, minimum=1, maximum=100)
    assert number is not None and size is not None
    return number, size


@router.post(INDEX + "/create")
async def create_index(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    name = params.required_text("Name", max_length=200)
    structure = params.choice("StructureType", ("unstructured", "structured"), required=True)
    sink = params.required_text("SinkType", max_length=32)
    columns = params.json_list("Columns", item=dict)
    extras: dict[str, Any] = {key: params.raw(key) for key in KEPT if key in params}
    if columns is not None:
        extras["Columns"] = columns
    params.number("RerankMinScore", minimum=0, maximum=1)
    params.boolean("EnableRewrite")
    spec = index_service.IndexRequest(
        name=name, structure_type=structure or "", sink_type=sink,
        source_type=params.choice("SourceType", SOURCE_TYPES),
        document_ids=params.json_list("DocumentIds", max_items=index_service.MAX_SOURCES) or [],
        category_ids=params.json_list("CategoryIds", max_items=index_service.MAX_SOURCES) or [],
        chunking=_chunking(params), description=params.text("Description", default="", max_length=2000) or "",
        extras=extras,
    )
    base = await index_service.create_index(runtime.files, caller.workspace_id, spec)
    return _data(request, {"Id": base.id})


@router.post(INDEX + "/submit_index_job")
async def submit_index_job(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    job = await index_service.submit_job(
        runtime.files, runtime.knowledge, caller.workspace_id, params.required_text("IndexId", max_length=64)
    )
    return _data(request, {"Id": job.id, "IndexId": job.index_id})


@router.post(INDEX + "/add_documents_to_index")
async def submit_index_add_documents_job(
    request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    index_id = params.required_text("IndexId", max_length=64)
    source_type = params.choice("SourceType", SOURCE_TYPES, required=True)
    job = await index_service.submit_job(
        runtime.files, runtime.knowledge, caller.workspace_id, index_id, source_type=source_type,
        document_ids=params.json_list("DocumentIds", max_items=index_service.MAX_SOURCES) or [],
        category_ids=params.json_list("CategoryIds", max_items=index_service.MAX_SOURCES) or [],
        chunking=_chunking(params),
    )
    return _data(request, {"Id": job.id})


@router.get(INDEX + "/job/status")
async def get_index_job_status(
    request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    number, size = _paging(params, "pageSize")
    status = await index_service.job_status(
        runtime.files, caller.workspace_id,
        params.required_text("IndexId", max_length=64), params.required_text("JobId", max_length=64),
        page_number=number, page_size=size,
    )
    return _data(request, {
        "JobId": status.job_id,
        "Status": status.status,
        "Documents": [
            {"DocId": d.doc_id, "DocName": d.doc_name, "Status": d.status, "Code": d.code, "Message": d.message,
             "GmtModified": _millis(d.modified_at), "Progress": _progress(d.progress)}
            for d in status.documents
        ],
    })


def _index(base: kb.KnowledgeBaseInfo, document_ids: list[str]) -> dict[str, Any]:
    options = base.options
    return {
        "Id": base.id,
        "Name": base.name,
        "Description": base.description,
        "StructureType": base.kind,
        "SourceType": options.get("source_type"),
        "SinkType": options.get("sink_type", "BUILT_IN"),
        "DocumentIds": document_ids,
        "ChunkSize": base.chunking.size,
        "OverlapSize": base.chunking.overlap,
        "Separator": base.chunking.separator,
        "EmbeddingModelName": options.get("EmbeddingModelName"),
        "RerankModelName": options.get("RerankModelName"),
        "RerankMinScore": options.get("RerankMinScore"),
        "EnableRewrite": options.get("EnableRewrite"),
    }


@router.get(INDEX + "/list_indices")
async def list_indices(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    number, size = _paging(params)
    bases, documents, total = await index_service.list_indices(
        runtime.files, caller.workspace_id,
        name=params.text("IndexName", allow_empty=False, max_length=200), page_number=number, page_size=size,
    )
    return _data(request, {
        "Indices": [_index(b, documents.get(b.id, [])) for b in bases],
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": total,
    })


@router.get(INDEX + "/list_index_documents")
async def list_index_documents(
    request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    number, size = _paging(params)
    index_id = params.required_text("IndexId", max_length=64)
    params.boolean("EnableNameLike")  # names always match by part here
    documents, total = await index_service.list_index_documents(
        runtime.files, caller.workspace_id, index_id,
        name=params.text("DocumentName", allow_empty=False, max_length=255),
        status=params.text("DocumentStatus", allow_empty=False, max_length=32),
        page_number=number, page_size=size,
    )
    return _data(request, {
        "IndexId": index_id,
        "Documents": [
            {"Id": d.public_id, "Name": d.name, "Status": index_service.document_state(d),
             "Code": "" if d.status == "FILE_IS_READY" else d.status, "Message": d.reason,
             "DocumentType": d.file_type.lstrip("."), "Size": d.size_bytes, "SourceId": d.source_id or d.id,
             "GmtModified": _millis(d.updated_at), "Progress": _progress(d.progress)}
            for d in documents
        ],
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": total,
    })


@router.post(INDEX + "/delete_index_document")
async def delete_index_document(
    request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    deleted = await index_service.delete_index_documents(
        runtime.files, runtime.knowledge, caller.workspace_id, params.required_text("IndexId", max_length=64),
        params.json_list("DocumentIds", required=True, max_items=index_service.MAX_SOURCES) or [],
    )
    return _data(request, {"DeletedDocument": deleted})


@router.post(INDEX + "/delete")
async def delete_index(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    await index_service.delete_index(
        runtime.files, runtime.knowledge, caller.workspace_id,
        params.required_text("IndexId", max_length=64),
    )
    return _data(request, None)


@router.post(INDEX + "/retrieve")
async def retrieve(request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep) -> JSONResponse:
    index_id = params.required_text("IndexId", max_length=64)
    search = index_service.RetrieveRequest(
        query=params.required_text("Query"),
        dense_top_k=params.integer("DenseSimilarityTopK", default=100) or 0,
        sparse_top_k=params.integer("SparseSimilarityTopK", default=100) or 0,
        enable_reranking=bool(params.boolean("EnableReranking", default=True)),
        rerank_top_n=params.integer("RerankTopN", default=5) or 0,
        rerank_min_score=params.number("RerankMinScore"),
        search_filters=params.json_list("SearchFilters", item=dict) or [],
    )
    params.boolean("EnableRewrite")
    params.boolean("SaveRetrieverHistory")
    params.json_list("QueryHistory", item=dict)
    nodes = await index_service.retrieve(
        runtime.files, runtime.knowledge.retriever, caller.workspace_id, index_id, search
    )
    return _data(request, {
        "Nodes": [
            {
                "Text": node.text,
                "Score": node.score,
                "Metadata": {
                    "doc_id": node.doc_id, "doc_name": node.doc_name, "title": node.title,
                    "hier_title": node.title, "pipeline_id": node.index_id, "workspace_id": caller.workspace_id,
                    "page_number": node.pages, "content": node.text,
                    **({"record": node.record} if node.record else {}),
                },
            }
            for node in nodes
        ],
    })
