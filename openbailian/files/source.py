"""``SessionFileSource``: the files a call names in ``rag_options.session_file_ids``
become context, an ``agentRag`` thought and (with show_sources) doc_references,
exactly as knowledge-base hits do (``knowledge.source.augmentation_for``).

Small files are given whole (every chunk, in order); larger ones are searched
with the knowledge pipeline's hybrid retrieval, restricted to the named files.
When the app's model reads images (``ModelSpec.vision``), image files are given
to it as images attached to the question instead of as their OCR text.
"""

from __future__ import annotations

import base64
import mimetypes

from openbailian.engine.augment import Augmentation, CallContext
from openbailian.errors import InvalidParameter
from openbailian.files.formats import FileKind
from openbailian.files.system import SessionFiles
from openbailian.files.threads import run_for_call
from openbailian.knowledge.retrieve import Hit
from openbailian.knowledge.source import augmentation_for
from openbailian.services.files import usable_files
from openbailian.storage.files_models import SessionFile

__all__ = ["SessionFileSource", "SESSION_FILES_INDEX_ID", "files_augmentation"]

# What doc_references[].index_id says for a session file (its doc_id is the file id).
SESSION_FILES_INDEX_ID = "session_files"


class SessionFileSource:
    def __init__(self, files: SessionFiles, *, whole_file_tokens: int = 1500, top_k: int = 6) -> None:
        self.files = files
        self.whole_file_tokens = whole_file_tokens
        self.top_k = top_k

    async def gather(self, context: CallContext) -> Augmentation:
        file_ids = (context.call.rag_options or {}).get("session_file_ids")
        if file_ids is None or file_ids == []:
            return Augmentation()
        if not context.config.file_parsing:
            raise InvalidParameter(
                "rag_options.session_file_ids needs the app's dynamic file parsing switch on: "
                "`openbailian apps update APP_ID --file-parsing` then `openbailian apps publish APP_ID`, "
                "or PATCH /manage/v1/apps/{app_id} {\"file_parsing\": true} then POST …/publish"
            )
        rows = await usable_files(
            self.files, context.call.workspace_id, file_ids, max_files=self.files.settings.files_max_per_call
        )
        images: list[str] = []
        if context.model_accepts_images:
            # A vision model sees the images themselves; OCR text is for the others.
            pictures = [row for row in rows if row.kind == FileKind.IMAGE]
            images = [await self._data_url(row) for row in pictures]
            rows = [row for row in rows if row.kind != FileKind.IMAGE]
        by_ref = {row.index_ref or "": row for row in rows}
        passages = await self.files.index.passages(
            list(by_ref), context.query, self.whole_file_tokens, self.top_k
        ) if by_ref else []
        hits = [
            Hit(
                chunk_id=0,
                base_id=SESSION_FILES_INDEX_ID,
                document_id=by_ref[p.ref].id,
                doc_name=by_ref[p.ref].file_name,
                title=p.title,
                text=p.text,
                pages=list(p.pages),
            )
            for p in passages
        ]
        return files_augmentation(context, hits, images)

    async def _data_url(self, row: SessionFile) -> str:
        data = await run_for_call(self.files.store.get, row.object_key or "")
        mime = mimetypes.types_map.get(f".{row.file_type.lower()}", "application/octet-stream")
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def files_augmentation(context: CallContext, hits: list[Hit], images: list[str]) -> Augmentation:
    """What a call's files add (session files or the call's own): their passages as knowledge hits
    are shown, numbered after the call's earlier sources, and the images for a vision model."""
    augmentation = augmentation_for(
        hits,
        indexed=context.call.doc_reference_type == "indexed",
        show_sources=context.config.show_sources,
        kind="session_files",
        start=context.numbered + 1,
    ) if hits else Augmentation()
    augmentation.images = images
    return augmentation
