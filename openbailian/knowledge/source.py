"""Knowledge bases in app calls: the ``ContextSource`` that searches before the answer."""

from __future__ import annotations

import json

from openbailian.engine.augment import Augmentation, CallContext, data_block
from openbailian.engine.events import DocReference, Thought
from openbailian.knowledge.retrieve import Hit, Retriever
from openbailian.services import knowledge as service
from openbailian.storage.db import Database

__all__ = ["KnowledgeSource", "augmentation_for", "format_hits"]

_OPTION_KEYS = ("pipeline_ids", "file_ids", "tags", "metadata_filter", "structured_filter")
CITE_INSTRUCTION = (
    "When you use a passage, cite it with its number in square brackets, e.g. [1], "
    "right after the sentence that uses it."
)


def format_hits(hits: list[Hit], *, indexed: bool) -> str:
    parts = []
    for number, hit in enumerate(hits, start=1):
        where = f"{hit.doc_name}" + (f" — {hit.title}" if hit.title and hit.record is None else "")
        if hit.pages:
            where += f" (page {', '.join(str(p) for p in hit.pages)})"
        parts.append(f"[{number}] {where}\n{hit.text}")
    body = "\n\n".join(parts)
    if indexed:
        body = f"{CITE_INSTRUCTION}\n\n{body}"
    return body


def _observation(hits: list[Hit]) -> str:
    return json.dumps(
        [
            {"index": str(n), "index_id": h.base_id, "doc_id": h.document_id, "doc_name": h.doc_name,
             "title": h.title, "content": h.text, "page_number": h.pages}
            for n, h in enumerate(hits, start=1)
        ],
        ensure_ascii=False,
    )


def augmentation_for(hits: list[Hit], *, indexed: bool, show_sources: bool, kind: str = "knowledge") -> Augmentation:
    """Context block, ``agentRag`` thought and (when shown) ``doc_references`` for these hits."""
    if not hits:
        return Augmentation(thoughts=[Thought(action_type="agentRag", thought="", observation="[]")])
    references = []
    if show_sources:
        references = [
            DocReference(
                index_id=h.base_id, doc_id=h.document_id, doc_name=h.doc_name, text=h.text,
                title=h.title or h.doc_name, images=[], page_number=list(h.pages),
                reference_index=str(n),
            )
            for n, h in enumerate(hits, start=1)
        ]
    return Augmentation(
        context_blocks=[data_block(kind, format_hits(hits, indexed=indexed))],
        thoughts=[Thought(action_type="agentRag", thought="", observation=_observation(hits))],
        references=references,
    )


class KnowledgeSource:
    """Searches the app's bases (or ``rag_options.pipeline_ids``) for the user's question."""

    def __init__(self, db: Database, retriever: Retriever, *, top_k: int = 5) -> None:
        self.db = db
        self.retriever = retriever
        self.top_k = top_k

    async def gather(self, call: CallContext) -> Augmentation:
        options = call.rag_options or {}
        named = isinstance(options, dict) and any(options.get(k) for k in _OPTION_KEYS)
        if not call.config.knowledge_enabled and not named:
            return Augmentation()
        defaults = call.config.knowledge_base_ids if call.config.knowledge_enabled else []
        async with self.db.session() as session:
            request = await service.parse_search_options(
                session, call.workspace_id, defaults, options, self.retriever
            )
        if request is None:
            return Augmentation()
        top_k = call.config.knowledge_top_k or self.top_k
        hits = await service.search(self.retriever, request, call.query, top_k=top_k)
        return augmentation_for(
            hits, indexed=call.doc_reference_type == "indexed", show_sources=call.config.show_sources
        )
