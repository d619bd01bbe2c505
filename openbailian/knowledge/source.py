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


def format_hits(hits: list[Hit], *, indexed: bool, start: int = 1) -> str:
    parts = []
    for number, hit in enumerate(hits, start=start):
        where = f"{hit.doc_name}" + (f" — {hit.title}" if hit.title and hit.record is None else "")
        if hit.pages:
            where += f" (page {', '.join(str(p) for p in hit.pages)})"
        parts.append(f"[{number}] {where}\n{hit.text}")
    body = "\n\n".join(parts)
    if indexed:
        body = f"{CITE_INSTRUCTION}\n\n{body}"
    return body


def _observation(hits: list[Hit], start: int) -> str:
    return json.dumps(
        [
            {"index": str(n), "index_id": h.base_id, "doc_id": h.document_id, "doc_name": h.doc_name,
             "title": h.title, "content": h.text, "page_number": h.pages}
            for n, h in enumerate(hits, start=start)
        ],
        ensure_ascii=False,
    )


def augmentation_for(
    hits: list[Hit], *, indexed: bool, show_sources: bool, kind: str = "knowledge", start: int = 1
) -> Augmentation:
    """Context block, ``agentRag`` thought and (when shown) ``doc_references`` for these hits,
    numbered from ``start`` (``call.numbered + 1``: after the call's earlier sources)."""
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
            for n, h in enumerate(hits, start=start)
        ]
    return Augmentation(
        context_blocks=[data_block(kind, format_hits(hits, indexed=indexed, start=start))],
        thoughts=[Thought(action_type="agentRag", thought="", observation=_observation(hits, start))],
        references=references,
        numbered=len(hits),
    )


class KnowledgeSource:
    """Searches the app's bases (or ``rag_options.pipeline_ids``) for the user's question.

    When an earlier source of the call (its session files) already found passages, the question
    is about those files: at most ``top_k_after_files`` knowledge chunks are added, not a full
    ``top_k`` of loosely related ones."""

    def __init__(self, db: Database, retriever: Retriever, *, top_k: int = 5, top_k_after_files: int = 2) -> None:
        self.db = db
        self.retriever = retriever
        self.top_k = top_k
        self.top_k_after_files = top_k_after_files

    async def gather(self, context: CallContext) -> Augmentation:
        call, config = context.call, context.config
        options = call.rag_options
        named = any(options.get(k) for k in _OPTION_KEYS)
        if not config.knowledge_enabled and not named:
            return Augmentation()
        defaults = config.knowledge_base_ids if config.knowledge_enabled else []
        ahead = self.retriever.ahead(context.query)  # a new question is embedded while the options are read
        request = await service.parse_search_options(self.db, call.workspace_id, defaults, options, self.retriever)
        if request is None:
            return Augmentation()
        top_k = config.knowledge_top_k or self.top_k
        if context.numbered:
            top_k = min(top_k, self.top_k_after_files)
        hits = await service.search(self.retriever, request, context.query, top_k=top_k, ahead=ahead)
        return augmentation_for(
            hits, indexed=call.doc_reference_type == "indexed", show_sources=config.show_sources,
            start=context.numbered + 1,
        )
