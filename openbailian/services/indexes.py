"""Knowledge bases built from data-center documents, as the OpenAPI's index operations
use them: CreateIndex, SubmitIndexJob / SubmitIndexAddDocumentsJob, GetIndexJobStatus,
ListIndices, ListIndexDocuments, DeleteIndexDocument, DeleteIndex, Retrieve.

An index is a knowledge base (the same row ``openbailian kb`` and ``/manage/v1`` show); a
job queues copies of data-center documents as documents of the base, which the knowledge
ingestion parses, chunks (with the base's own chunking) and embeds. A document of an index
is named by the data-center id it came from (``source_id``), so those ids work as
``rag_options.file_ids`` beside the index id in ``pipeline_ids``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import InvalidParameter, KnowledgeBaseNotFound, NotFound
from openbailian.files.store import materialized
from openbailian.files.system import SessionFiles
from openbailian.knowledge.ingest import Status
from openbailian.knowledge.retrieve import Retriever
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.services import files as file_service
from openbailian.services import knowledge as kb
from openbailian.storage.files_models import SessionFile
from openbailian.storage.knowledge_models import KnowledgeDocument, KnowledgeJob

__all__ = [
    "SOURCE_FILES",
    "SOURCE_CATEGORIES",
    "IndexRequest",
    "IndexJob",
    "JobDocument",
    "JobStatus",
    "RetrieveRequest",
    "RetrievedNode",
    "create_index",
    "upsert_index",
    "find_index",
    "submit_job",
    "job_status",
    "list_indices",
    "list_index_documents",
    "delete_index_documents",
    "delete_index",
    "retrieve",
]

SOURCE_FILES = "DATA_CENTER_FILE"
SOURCE_CATEGORIES = "DATA_CENTER_CATEGORY"
SINK_TYPES = ("BUILT_IN", "DEFAULT")
MAX_SOURCES = 10_000
IN_PROGRESS = {Status.INIT, Status.PARSING, Status.PARSE_SUCCESS, Status.INDEX_BUILDING, Status.INDEX_BUILD_SUCCESS}


@dataclass(frozen=True, slots=True)
class IndexRequest:
    name: str
    structure_type: str
    sink_type: str
    source_type: str | None = None
    document_ids: list[str] = field(default_factory=list)
    category_ids: list[str] = field(default_factory=list)
    chunking: kb.ChunkSettings = field(default_factory=kb.ChunkSettings)
    description: str = ""
    # Everything else CreateIndex was given (model names, thresholds…), kept as sent.
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndexJob:
    id: str
    index_id: str


@dataclass(frozen=True, slots=True)
class JobDocument:
    doc_id: str
    doc_name: str
    # RUNNING, FINISH, PARSE_FAILED, INSERT_ERROR (embedding failed), DELETED
    status: str
    code: str
    message: str
    modified_at: datetime | None
    progress: kb.IngestProgress | None = None  # while its chunks are being embedded


@dataclass(frozen=True, slots=True)
class JobStatus:
    job_id: str
    index_id: str
    # PENDING, RUNNING, COMPLETED, FAILED
    status: str
    documents: list[JobDocument]
    total: int


@dataclass(frozen=True, slots=True)
class RetrieveRequest:
    query: str
    dense_top_k: int = 100
    sparse_top_k: int = 100
    enable_reranking: bool = True
    rerank_top_n: int = 5
    rerank_min_score: float | None = None
    search_filters: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RetrievedNode:
    text: str
    score: float
    index_id: str
    doc_id: str
    doc_name: str
    title: str
    pages: list[int]
    record: dict[str, Any] | None


def _ids(value: object, label: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParameter(f"{label} must be a list of ids")
    if len(value) > MAX_SOURCES:
        raise InvalidParameter(f"{label} names more than {MAX_SOURCES} ids")
    return list(dict.fromkeys(value))


def _sources(source_type: str | None, document_ids: Sequence[str], category_ids: Sequence[str]) -> dict[str, Any]:
    if source_type not in (None, "", SOURCE_FILES, SOURCE_CATEGORIES):
        raise InvalidParameter(f"SourceType must be {SOURCE_FILES} or {SOURCE_CATEGORIES}, not '{source_type}'")
    documents, categories = _ids(document_ids, "DocumentIds"), _ids(category_ids, "CategoryIds")
    if source_type == SOURCE_FILES and not documents:
        raise InvalidParameter(f"SourceType {SOURCE_FILES} needs DocumentIds")
    if source_type == SOURCE_CATEGORIES and not categories:
        raise InvalidParameter(f"SourceType {SOURCE_CATEGORIES} needs CategoryIds")
    if source_type == SOURCE_FILES:
        categories = []
    elif source_type == SOURCE_CATEGORIES:
        documents = []
    return {"source_type": source_type or None, "document_ids": documents, "category_ids": categories}


async def create_index(files: SessionFiles, workspace_id: str, request: IndexRequest) -> kb.KnowledgeBaseInfo:
    """A new knowledge base that will hold these documents (SubmitIndexJob imports them)."""
    structure = (request.structure_type or "").lower()
    if structure not in kb.BASE_KINDS:
        raise InvalidParameter(f"StructureType must be 'unstructured' or 'structured', not '{request.structure_type}'")
    if request.sink_type not in SINK_TYPES:
        raise InvalidParameter(f"SinkType must be BUILT_IN (the server's own index), not '{request.sink_type}'")
    sources = _sources(request.source_type, request.document_ids, request.category_ids)
    async with files.db.transaction() as session:
        await file_service.datacenter_documents(
            session, workspace_id, document_ids=sources["document_ids"], category_ids=sources["category_ids"]
        )
        return await kb.create_base(
            session, workspace_id=workspace_id, name=request.name, kind=structure,
            description=request.description, chunking=request.chunking,
            options={"sink_type": request.sink_type, **sources, **request.extras},
        )


async def find_index(files: SessionFiles, workspace_id: str, name: str) -> kb.KnowledgeBaseInfo:
    """The workspace's newest base of this name."""
    async with files.db.session() as session:
        bases = [b for b in await kb.list_bases(session, workspace_id) if b.name == name]
    if not bases:
        raise KnowledgeBaseNotFound(f"There is no knowledge base named '{name}' in workspace '{workspace_id}'")
    return bases[-1]


async def upsert_index(files: SessionFiles, workspace_id: str, request: IndexRequest) -> kb.KnowledgeBaseInfo:
    """The base of this name with these sources (made when there is none): the DashScope
    pipeline API's PUT. An existing base keeps its documents; the next job imports the new
    sources."""
    try:
        base = await find_index(files, workspace_id, request.name)
    except KnowledgeBaseNotFound:
        return await create_index(files, workspace_id, request)
    sources = _sources(request.source_type, request.document_ids, request.category_ids)
    async with files.db.transaction() as session:
        await file_service.datacenter_documents(
            session, workspace_id, document_ids=sources["document_ids"], category_ids=sources["category_ids"]
        )
        return await kb.update_base(session, base.id, workspace_id, options=sources)


async def submit_job(
    files: SessionFiles,
    knowledge: KnowledgeSystem,
    workspace_id: str,
    index_id: str,
    *,
    source_type: str | None = None,
    document_ids: Sequence[str] | None = None,
    category_ids: Sequence[str] | None = None,
    chunking: kb.ChunkSettings | None = None,
) -> IndexJob:
    """Queue the index's documents (CreateIndex's sources when none are named) and return the
    job that follows them. A document already in the index is not imported twice; its current
    state is part of the job. ``chunking`` applies to the documents ingested from now on."""
    async with files.db.session() as session:
        base = await kb.get_base(session, index_id, workspace_id)
        if document_ids is None and category_ids is None:
            named = {"document_ids": base.options.get("document_ids") or [],
                     "category_ids": base.options.get("category_ids") or []}
        else:
            if not source_type:
                raise InvalidParameter(f"SourceType is required: {SOURCE_FILES} or {SOURCE_CATEGORIES}")
            named = _sources(source_type, document_ids or [], category_ids or [])
        rows = await file_service.datacenter_documents(
            session, workspace_id, document_ids=named["document_ids"], category_ids=named["category_ids"]
        )
        existing = await _imported(session, base.id, rows)
    new_rows = [row for row in rows if row.id not in existing]
    for row in new_rows:
        if row.object_key is None:
            raise InvalidParameter(
                f"Document '{row.id}' cannot be imported: its processing failed ({row.failure_reason or row.status})"
            )
        kb.check_upload(base, row.file_name, row.size_in_bytes, files.settings.knowledge_max_file_bytes)
    store = knowledge.store
    staged: dict[str, kb.StagedDocument] = {}
    try:
        for row in new_rows:  # checked and copied outside any transaction
            with materialized(files.store, row.object_key or "", f".{row.file_type}") as path:
                staged[row.id] = await kb.stage_document(
                    base, name=row.file_name, data=path, move=False, store=store,
                    max_bytes=files.settings.knowledge_max_file_bytes, limits=files.limits,
                )
        async with files.db.transaction() as session:
            if chunking is not None and (chunking.size, chunking.overlap, chunking.separator) != (None, None, None):
                base = await kb.update_base(session, index_id, workspace_id, chunking=chunking)
            else:
                base = await kb.get_base(session, index_id, workspace_id)  # not deleted meanwhile
            existing = await _imported(session, base.id, rows)  # a concurrent job may have imported some
            document_ids_of_job = []
            for row in rows:
                if row.id in existing:
                    document_ids_of_job.append(existing[row.id])
                    continue
                document = await kb.add_document(
                    session, base, staged[row.id], tags=list(row.tags or []), source="datacenter", source_id=row.id
                )
                document_ids_of_job.append(document.id)
            job = KnowledgeJob(
                id=f"job_{uuid.uuid4().hex}", base_id=base.id, workspace_id=workspace_id,
                document_ids=document_ids_of_job,
            )
            session.add(job)
    except BaseException:
        await kb.discard_staged(store, list(staged.values()))
        raise
    await kb.discard_staged(store, [staged[row_id] for row_id in staged if row_id in existing])
    knowledge.worker.wake()
    return IndexJob(job.id, base.id)


async def _imported(session: AsyncSession, base_id: str, rows: Sequence[SessionFile]) -> dict[str, str]:
    """Data-center document id → the base's document imported from it, for those already in."""
    query = select(KnowledgeDocument).where(
        KnowledgeDocument.base_id == base_id, KnowledgeDocument.source_id.in_([r.id for r in rows])
    )
    return {row.source_id: row.id for row in await session.scalars(query) if row.source_id}


def _job_document(document: kb.DocumentInfo | None, document_id: str) -> JobDocument:
    if document is None:
        return JobDocument(document_id, "", "DELETED", "DocumentDeleted", "The document was deleted from the index", None)
    if document.status == Status.FILE_IS_READY:
        state, code = "FINISH", "Success"
    elif document.status == Status.PARSE_FAILED:
        state, code = "PARSE_FAILED", "ParseFailed"
    elif document.status == Status.INDEX_BUILDING_FAILED:
        state, code = "INSERT_ERROR", "IndexBuildingFailed"
    else:
        state, code = "RUNNING", ""
    return JobDocument(
        document.public_id, document.name, state, code, document.reason, document.updated_at, document.progress
    )


def _job_state(documents: list[kb.DocumentInfo | None]) -> str:
    present = [d for d in documents if d is not None]
    if any(d.status in IN_PROGRESS for d in present):
        if all(d.status == Status.INIT for d in present):
            return "PENDING"
        return "RUNNING"
    if present and all(d.status != Status.FILE_IS_READY for d in present):
        return "FAILED"
    return "COMPLETED"


def _page(page_number: int, page_size: int, *, max_size: int = 100) -> tuple[int, int]:
    if page_number < 1:
        raise InvalidParameter("PageNumber starts at 1")
    if not 1 <= page_size <= max_size:
        raise InvalidParameter(f"PageSize must be between 1 and {max_size}")
    return (page_number - 1) * page_size, page_size


async def job_status(
    files: SessionFiles, workspace_id: str, index_id: str, job_id: str, *, page_number: int = 1, page_size: int = 10
) -> JobStatus:
    offset, size = _page(page_number, page_size)
    async with files.db.session() as session:
        base = await kb.get_base(session, index_id, workspace_id)
        job = await session.get(KnowledgeJob, job_id) if isinstance(job_id, str) else None
        if job is None or job.base_id != base.id:
            raise NotFound(f"Job '{job_id}' of index '{index_id}' does not exist")
        found = await kb.documents_by_ids(session, job.document_ids)
    documents = [found.get(i) for i in job.document_ids]
    shown = [_job_document(d, i) for d, i in zip(documents, job.document_ids, strict=True)]
    return JobStatus(job.id, base.id, _job_state(documents), shown[offset : offset + size], len(shown))


async def list_indices(
    files: SessionFiles, workspace_id: str, *, name: str | None = None, page_number: int = 1, page_size: int = 10
) -> tuple[list[kb.KnowledgeBaseInfo], dict[str, list[str]], int]:
    """Bases of the workspace (every face's), optionally those whose name contains ``name``;
    with the data-center ids of each base's documents."""
    offset, size = _page(page_number, page_size)
    async with files.db.session() as session:
        bases = await kb.list_bases(session, workspace_id)
        if name:
            bases = [b for b in bases if name in b.name]
        page = bases[offset : offset + size]
        documents: dict[str, list[str]] = {}
        for base in page:
            documents[base.id] = [d.public_id for d in await kb.list_documents(session, base.id, workspace_id)]
    return page, documents, len(bases)


def document_state(document: kb.DocumentInfo) -> str:
    """A document's state as an index lists it (the job vocabulary)."""
    return _job_document(document, document.id).status


async def list_index_documents(
    files: SessionFiles,
    workspace_id: str,
    index_id: str,
    *,
    name: str | None = None,
    status: str | None = None,
    page_number: int = 1,
    page_size: int = 10,
) -> tuple[list[kb.DocumentInfo], int]:
    offset, size = _page(page_number, page_size)
    async with files.db.session() as session:
        documents = await kb.list_documents(session, index_id, workspace_id)
    if name:
        documents = [d for d in documents if name in d.name]
    if status:
        documents = [d for d in documents if document_state(d) == status or d.status == status]
    return documents[offset : offset + size], len(documents)


async def delete_index_documents(
    files: SessionFiles, knowledge: KnowledgeSystem, workspace_id: str, index_id: str, document_ids: Sequence[str]
) -> list[str]:
    """Remove these documents (by data-center id or own id) from the index; all or nothing."""
    names = _ids(document_ids, "DocumentIds")
    if not names:
        raise InvalidParameter("DocumentIds names no document")
    async with files.db.transaction() as session:
        base = await kb.get_base(session, index_id, workspace_id)
        found, missing = await kb.resolve_documents(session, workspace_id, [base.id], names)
        if missing:
            raise NotFound(f"Document(s) {', '.join(missing)} are not in index '{index_id}'")
        for document in found:
            await kb.delete_document(session, document.id, workspace_id, knowledge.store)
    return names


async def delete_index(files: SessionFiles, knowledge: KnowledgeSystem, workspace_id: str, index_id: str) -> None:
    async with files.db.transaction() as session:
        await kb.delete_base(session, index_id, workspace_id, knowledge.store)
    knowledge.retriever.index.forget(index_id)


_ID_KEYS = ("doc_id", "doc_ids", "file_id", "file_ids", "document_id", "document_ids")


def _filters(search_filters: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """SearchFilters (a list of conditions, all of which must hold) as ``rag_options`` fields:
    ``tags`` (any of), document ids, and any other key as a metadata equality."""
    if not isinstance(search_filters, list | tuple):
        raise InvalidParameter("SearchFilters must be a list of objects")
    tags: list[str] = []
    ids: list[str] | None = None
    metadata: dict[str, str] = {}
    for condition in search_filters:
        if not isinstance(condition, Mapping):
            raise InvalidParameter("Each SearchFilters entry must be an object of field: value")
        for key, value in condition.items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
                raise InvalidParameter(f"SearchFilters.{key} must be a string, a number or a list of them")
            if key == "tags":
                tags.extend(str(v) for v in values)
            elif key in _ID_KEYS:
                named = [str(v) for v in values]
                ids = named if ids is None else [i for i in ids if i in named]
            elif isinstance(value, list):
                raise InvalidParameter(f"SearchFilters.{key} must be one value")
            else:
                metadata[str(key)] = str(value)
    options: dict[str, Any] = {}
    if tags:
        options["tags"] = list(dict.fromkeys(tags))
    if ids is not None:
        if not ids:
            raise InvalidParameter("SearchFilters name document ids that exclude each other")
        options["file_ids"] = ids
    if metadata:
        options["metadata_filter"] = metadata
    return options


def _check_retrieve(request: RetrieveRequest) -> None:
    if not isinstance(request.query, str) or not request.query.strip():
        raise InvalidParameter("Query is required")
    for label, value in (("DenseSimilarityTopK", request.dense_top_k), ("SparseSimilarityTopK", request.sparse_top_k)):
        if not 0 <= value <= 100:
            raise InvalidParameter(f"{label} must be between 0 and 100")
    if request.dense_top_k + request.sparse_top_k == 0:
        raise InvalidParameter("DenseSimilarityTopK and SparseSimilarityTopK cannot both be 0")
    if not 1 <= request.rerank_top_n <= 20:
        raise InvalidParameter("RerankTopN must be between 1 and 20")
    if request.rerank_min_score is not None and not 0 <= request.rerank_min_score <= 1:
        raise InvalidParameter("RerankMinScore must be between 0.01 and 1.00")


async def retrieve(
    files: SessionFiles, retriever: Retriever, workspace_id: str, index_id: str, request: RetrieveRequest
) -> list[RetrievedNode]:
    """The index's best chunks for the query: hybrid search, then the reranker (when one is
    configured and EnableReranking) keeps ``rerank_top_n``; without reranking, the fused
    top ``max(dense_top_k, sparse_top_k)``."""
    _check_retrieve(request)
    options = {"pipeline_ids": [index_id], **_filters(request.search_filters)}
    ahead = retriever.ahead(request.query)  # a new question is embedded while the options are read
    search = await kb.parse_search_options(files.db, workspace_id, [], options, retriever)
    if search is None:
        return []
    limit = request.rerank_top_n if request.enable_reranking else max(request.dense_top_k, request.sparse_top_k)
    hits = await kb.search(
        retriever, search, request.query, top_k=limit, rerank=request.enable_reranking,
        rerank_min_score=request.rerank_min_score, ahead=ahead,
    )
    return [
        RetrievedNode(
            text=hit.text, score=hit.score, index_id=hit.base_id, doc_id=hit.public_id,
            doc_name=hit.doc_name, title=hit.title, pages=list(hit.pages), record=hit.record,
        )
        for hit in hits
    ]
