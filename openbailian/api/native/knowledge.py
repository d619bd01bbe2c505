"""The DashScope-native knowledge API of LlamaIndex's ``DashScopeCloudIndex`` /
``DashScopeCloudRetriever`` and ``DashScopeParse``, over the same services as the OpenAPI:

- ``POST /api/v1/datacenter/category/{id}/upload_lease``, ``…/add_file``,
  ``…/file/{file_id}/query``, ``…/file/{file_id}/download_lease``: data-center documents;
- ``PUT /api/v1/indices/pipeline`` (create or update a pipeline = a knowledge base by name),
  ``GET /api/v1/indices/pipeline_simple``, ``POST …/pipeline/{id}/managed_ingest`` and
  ``GET …/managed_ingest/{job}/status`` (index jobs), ``POST …/retrieve``,
  ``PUT …/documents``, ``POST …/delete``.

Bodies are JSON; answers carry ``code: "Success"`` and ``request_id``; errors are the
DashScope ``{code, message, request_id}`` with their HTTP status.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Route

from openbailian.api.boundary import enforce_input_boundary
from openbailian.api.deps import KeyCaller, get_key_caller, get_runtime
from openbailian.api.errors import request_id_of
from openbailian.api.fast import body_as
from openbailian.errors import InvalidParameter
from openbailian.files.system import SessionFiles
from openbailian.knowledge.retrieve import Retriever
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.services import files as file_service
from openbailian.services import indexes as index_service
from openbailian.services import knowledge as kb

__all__ = ["router", "fast_retrieve"]

router = APIRouter(prefix="/api/v1", tags=["DashScope knowledge API"])
RETRIEVE_PATH = "/indices/pipeline/{pipeline_id}/retrieve"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UploadLeaseBody(_Body):
    file_name: str = Field(min_length=1)
    size_bytes: int
    content_md5: str


class AddFileBody(_Body):
    lease_id: str = Field(min_length=1)
    parser: str | None = None


class DataSource(_Body):
    source_type: str = index_service.SOURCE_FILES
    component: dict[str, Any] = Field(default_factory=dict)


class PipelineBody(_Body):
    name: str = Field(min_length=1)
    configured_transformations: list[dict[str, Any]] = Field(default_factory=list)
    data_sources: list[DataSource] = Field(default_factory=list)
    data_sinks: list[dict[str, Any]] = Field(default_factory=list)


class DocumentsBody(_Body):
    configured_transformations: list[dict[str, Any]] = Field(default_factory=list)
    data_sources: list[DataSource] = Field(default_factory=list)


class RetrieveBody(_Body):
    query: str = Field(min_length=1)
    dense_similarity_top_k: int = 100
    sparse_similarity_top_k: int = 100
    enable_reranking: bool = True
    rerank_top_n: int = 5
    rerank_min_score: float | None = None
    search_filters: list[dict[str, Any]] = Field(default_factory=list)


def _files(request: Request) -> SessionFiles:
    return get_runtime(request).files


def _knowledge(request: Request) -> KnowledgeSystem:
    return get_runtime(request).knowledge


def _retriever(request: Request) -> Retriever:
    return get_runtime(request).knowledge.retriever


def _ok(request: Request, **fields: Any) -> dict[str, Any]:
    return {"code": "Success", "message": "", "request_id": request_id_of(request), **fields}


def _doc_ids(sources: list[DataSource]) -> list[str]:
    ids: list[str] = []
    for source in sources:
        if source.source_type != index_service.SOURCE_FILES:
            raise InvalidParameter(f"data_sources: source_type must be {index_service.SOURCE_FILES}")
        named = source.component.get("doc_ids", [])
        if not isinstance(named, list) or not all(isinstance(i, str) and i for i in named):
            raise InvalidParameter("data_sources[].component.doc_ids must be a list of document ids")
        ids.extend(named)
    return list(dict.fromkeys(ids))


def _chunking(transformations: list[dict[str, Any]]) -> kb.ChunkSettings:
    """Chunk size and overlap of a node-parser transformation, when it names them. (Its
    ``separator`` is a regular expression of DashScope's parser; the server's chunker splits
    at sentence ends itself, so it is not applied.)"""
    for item in transformations:
        component = item.get("component") if isinstance(item, dict) else None
        if not isinstance(component, dict):
            continue
        size, overlap = component.get("chunk_size"), component.get("chunk_overlap", component.get("overlap_size"))
        if isinstance(size, int) and not isinstance(size, bool):
            return kb.ChunkSettings(size, overlap if isinstance(overlap, int) and not isinstance(overlap, bool) else None)
    return kb.ChunkSettings()


def _file_view(file: file_service.FileInfo) -> dict[str, Any]:
    return {
        "file_id": file.id, "status": file.status, "file_name": file.file_name, "file_type": file.file_type,
        "parser": file.parser, "size_bytes": file.size_in_bytes, "upload_time": file.created_at.isoformat(),
        "category": file.category_id, "parse_error_message": file.failure_reason or None,
    }


# ---------------------------------------------------------------- data center


@router.post("/datacenter/category/{category_id}/upload_lease")
async def upload_lease(category_id: str, body: UploadLeaseBody, caller: KeyCaller, request: Request) -> dict[str, Any]:
    lease = await file_service.apply_lease(
        _files(request), caller.workspace_id, category_id=category_id,
        category_type=file_service.DATACENTER_TYPE, file_name=body.file_name, md5=body.content_md5,
        size_in_bytes=body.size_bytes, base_url=str(request.base_url),
    )
    param = {"url": lease.url, "method": lease.method, "headers": dict(lease.headers)}
    return _ok(request, data={"lease_id": lease.lease_id, "type": "OSS.PreSignedUrl", "param": param})


@router.post("/datacenter/category/{category_id}/add_file")
async def add_file(category_id: str, body: AddFileBody, caller: KeyCaller, request: Request) -> dict[str, Any]:
    file = await file_service.add_file(
        _files(request), caller.workspace_id, lease_id=body.lease_id, category_id=category_id,
        category_type=file_service.DATACENTER_TYPE, parser=body.parser,
    )
    return _ok(request, data={"file_id": file.id, "parser": file.parser})


@router.post("/datacenter/category/{category_id}/file/{file_id}/query")
async def query_file(category_id: str, file_id: str, caller: KeyCaller, request: Request) -> dict[str, Any]:
    file = await file_service.describe_file(_files(request), caller.workspace_id, file_id)
    return _ok(request, data=_file_view(file))


@router.post("/datacenter/category/{category_id}/file/{file_id}/download_lease")
async def download_lease(category_id: str, file_id: str, caller: KeyCaller, request: Request) -> dict[str, Any]:
    files = _files(request)
    file = await file_service.describe_file(files, caller.workspace_id, file_id)
    links = file_service.download_links(files, file, str(request.base_url))
    if links.parsed is None:
        raise InvalidParameter(f"File '{file_id}' is not parsed yet: its status is {file.status}")
    param = {"url": links.parsed, "method": "GET", "headers": {}}
    return _ok(request, data={"file_id": file.id, "lease_id": "", "file_name": file.file_name,
                              "type": "HTTP", "param": param})


# ---------------------------------------------------------------- pipelines


@router.put("/indices/pipeline")
async def upsert_pipeline(body: PipelineBody, caller: KeyCaller, request: Request) -> dict[str, Any]:
    ids = _doc_ids(body.data_sources)
    spec = index_service.IndexRequest(
        name=body.name, structure_type="unstructured", sink_type="BUILT_IN",
        source_type=index_service.SOURCE_FILES if ids else None, document_ids=ids,
        chunking=_chunking(body.configured_transformations),
    )
    base = await index_service.upsert_index(_files(request), caller.workspace_id, spec)
    return _ok(request, id=base.id, name=base.name)


@router.get("/indices/pipeline_simple")
async def pipeline_by_name(caller: KeyCaller, request: Request, pipeline_name: str = Query(min_length=1)) -> dict[str, Any]:
    base = await index_service.find_index(_files(request), caller.workspace_id, pipeline_name)
    return _ok(request, id=base.id, name=base.name)


@router.post("/indices/pipeline/{pipeline_id}/managed_ingest")
async def managed_ingest(pipeline_id: str, caller: KeyCaller, request: Request) -> dict[str, Any]:
    job = await index_service.submit_job(_files(request), _knowledge(request), caller.workspace_id, pipeline_id)
    return _ok(request, ingestionId=job.id)


@router.get("/indices/pipeline/{pipeline_id}/managed_ingest/{ingestion_id}/status")
async def ingestion_status(pipeline_id: str, ingestion_id: str, caller: KeyCaller, request: Request) -> dict[str, Any]:
    status = await index_service.job_status(
        _files(request), caller.workspace_id, pipeline_id, ingestion_id, page_size=100
    )
    failed = [
        {"doc_id": d.doc_id, "doc_name": d.doc_name, "status": d.status, "message": d.message}
        for d in status.documents if d.status not in ("RUNNING", "FINISH")
    ]
    return _ok(request, ingestion_status=status.status, failed_docs=failed)


@router.put("/indices/pipeline/{pipeline_id}/documents")
async def insert_documents(pipeline_id: str, body: DocumentsBody, caller: KeyCaller, request: Request) -> dict[str, Any]:
    ids = _doc_ids(body.data_sources)
    if not ids:
        raise InvalidParameter("data_sources names no document")
    job = await index_service.submit_job(
        _files(request), _knowledge(request), caller.workspace_id, pipeline_id, source_type=index_service.SOURCE_FILES,
        document_ids=ids, category_ids=[],
    )
    return _ok(request, ingestionId=job.id)


@router.post("/indices/pipeline/{pipeline_id}/delete")
async def delete_documents(pipeline_id: str, body: DocumentsBody, caller: KeyCaller, request: Request) -> dict[str, Any]:
    deleted = await index_service.delete_index_documents(
        _files(request), _knowledge(request), caller.workspace_id, pipeline_id, _doc_ids(body.data_sources)
    )
    return _ok(request, deleted=deleted)


@router.post(RETRIEVE_PATH)  # the OpenAPI schema's entry; calls are served by fast_retrieve
async def retrieve(pipeline_id: str, body: RetrieveBody, caller: KeyCaller, request: Request) -> dict[str, Any]:
    nodes = await index_service.retrieve(
        _files(request), _retriever(request), caller.workspace_id, pipeline_id,
        index_service.RetrieveRequest(
            query=body.query, dense_top_k=body.dense_similarity_top_k, sparse_top_k=body.sparse_similarity_top_k,
            enable_reranking=body.enable_reranking, rerank_top_n=body.rerank_top_n,
            rerank_min_score=body.rerank_min_score or None, search_filters=body.search_filters,
        ),
    )
    return _ok(
        request,
        nodes=[
            {
                "node": {
                    "id_": f"{node.doc_id}_{number}",
                    "text": node.text,
                    "metadata": {
                        "doc_id": node.doc_id, "doc_name": node.doc_name, "title": node.title,
                        "pipeline_id": node.index_id, "page_number": node.pages,
                        **({"record": node.record} if node.record else {}),
                    },
                },
                "score": node.score,
            }
            for number, node in enumerate(nodes, start=1)
        ],
    )


async def _retrieve_endpoint(request: Request) -> JSONResponse:
    """:func:`retrieve` as a plain Starlette route (``openbailian.api.fast``), as the manage face's."""
    await enforce_input_boundary(request)
    runtime = get_runtime(request)
    caller = await get_key_caller(request, runtime)
    body = await body_as(request, RetrieveBody, runtime.settings.max_body_bytes, runtime.settings.max_json_depth)
    return JSONResponse(await retrieve(request.path_params["pipeline_id"], body, caller, request))


fast_retrieve = Route(router.prefix + RETRIEVE_PATH, _retrieve_endpoint, methods=["POST"], include_in_schema=False)
