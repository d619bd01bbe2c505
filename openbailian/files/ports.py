"""What session files need from the pipeline that indexes their documents.

Session files depend on this interface only; knowledge implements it
(``knowledge.documents.SessionDocuments``) and the runtime wires the two. A session
file's bytes become one document (``ref``); ``index`` runs or follows its indexing to
the end, wherever it runs (this process, or a worker process sharing the database).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["DocumentIndex", "Indexed", "Passage", "StatusCallback", "READY"]

READY = "FILE_IS_READY"

# Called with each status the document passes through (PARSING, INDEX_BUILDING, …).
StatusCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Indexed:
    """How a document's indexing ended: ``FILE_IS_READY``, or a failed status and why."""

    status: str
    reason: str = ""
    pages: int = 0
    chunks: int = 0

    @property
    def ready(self) -> bool:
        return self.status == READY


@dataclass(frozen=True, slots=True)
class Passage:
    ref: str
    title: str
    text: str
    pages: tuple[int, ...] = ()


class DocumentIndex(Protocol):
    async def add(self, workspace_id: str, file_id: str, file_name: str, source: Path) -> str:
        """Take the file at ``source`` (it is moved) as a new document; its ref."""
        ...

    async def index(self, ref: str, on_status: StatusCallback | None = None) -> Indexed:
        """Index the document (here, or wait for whoever holds it) and say how it ended."""
        ...

    async def texts(self, ref: str) -> list[str]:
        """The document's passages' texts, in order."""
        ...

    async def passages(self, refs: list[str], query: str, whole_tokens: int, top_k: int) -> list[Passage]:
        """Every passage of these documents when they are small, else the best ``top_k`` for ``query``."""
        ...

    async def delete(self, ref: str) -> None:
        """Remove the document and everything indexed from it (nothing when it is gone)."""
        ...
