"""Everything knowledge needs at run time, built once per process (server or CLI)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from openbailian.config import Settings
from openbailian.files.store import LocalObjectStore, ObjectStore
from openbailian.knowledge.bm25 import keep_dictionary_in
from openbailian.knowledge.embed import (
    Embedder,
    embedder_from_settings,
    pin_blas_threads,
)
from openbailian.knowledge.ingest import IngestionWorker, IngestLimits, Ingestor
from openbailian.knowledge.parse import Parsers
from openbailian.knowledge.rerank import reranker_from_settings
from openbailian.knowledge.retrieve import Retriever
from openbailian.knowledge.search_pg import SearchRows, search_index_for
from openbailian.storage.db import Database

__all__ = ["KnowledgeSystem"]


@dataclass
class KnowledgeSystem:
    """Embedder, retriever (with the optional reranker), ingestor and the ingestion worker;
    a ``BackgroundWorker`` itself."""

    settings: Settings
    db: Database
    embedder: Embedder
    retriever: Retriever
    ingestor: Ingestor
    worker: IngestionWorker
    store: ObjectStore  # the documents' bytes (keys knowledge/files/<base>/<document><ext>)

    @classmethod
    def from_settings(
        cls,
        db: Database,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: ObjectStore | None = None,
        parsers: Mapping[str, Parsers] | None = None,
    ) -> KnowledgeSystem:
        """``store`` defaults to the local disk under ``OPENBAILIAN_HOME``; ``parsers``, by base
        kind, what the documents of system bases take (``{"session": …}``: images, audio, video),
        every knowledge base takes the documented types (``parse.STANDARD``)."""
        pin_blas_threads(1)
        keep_dictionary_in(settings.home / "models")  # jieba's, beside the embedder's model file
        embedder = embedder or embedder_from_settings(settings)
        retriever = Retriever(
            db,
            embedder,
            hnsw_threshold=settings.knowledge_hnsw_threshold,
            reranker=reranker_from_settings(settings),
            rerank_candidates=settings.knowledge_rerank_candidates,
            rerank_min_score=settings.knowledge_rerank_min_score,
            index=search_index_for(db, embedder.dim, settings),
        )
        store = store or LocalObjectStore(settings.home)
        ingestor = Ingestor(
            db, embedder, store, parsers=parsers, lease_seconds=settings.worker_lease_seconds,
            limits=IngestLimits.of(settings), search_rows=SearchRows(db),
        )
        worker = IngestionWorker(ingestor, poll_seconds=settings.worker_poll_seconds)
        return cls(settings, db, embedder, retriever, ingestor, worker, store)

    async def start(self) -> None:
        """Choose the search backend (refuses when pgvector is required and missing), then
        start the ingestion queue (the server does; the CLI drains it itself)."""
        prepare = getattr(self.retriever.index, "prepare", None)
        if prepare is not None:
            await prepare()
        await self.worker.start()

    async def aclose(self) -> None:
        await self.worker.aclose()
        await self.retriever.aclose()

