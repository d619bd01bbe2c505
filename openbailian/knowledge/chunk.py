"""Token-based chunking with overlap that never crosses a heading.

Tokens are counted the way a multilingual subword model roughly sees them: one
per CJK character, one per Latin word or number, one per other symbol. That is
close enough to e5's own count to keep chunks under its 512-token window without
running the model's tokenizer on every split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from openbailian.knowledge.parse import ParsedDocument, Section, Table

__all__ = [
    "Chunk",
    "ChunkRule",
    "chunk_by_characters",
    "chunk_document",
    "chunk_records",
    "count_tokens",
    "TITLE_SEPARATOR",
]

TITLE_SEPARATOR = " > "
_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+|[^\w\s]|_",
    re.UNICODE,
)
_SENTENCE_END = re.compile(r"[。！？!?；;\n]|\.(?=\s)")


@dataclass(slots=True)
class Chunk:
    text: str
    title: str = ""
    pages: list[int] = field(default_factory=list)
    record: dict[str, str] | None = None


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def _split(text: str, max_tokens: int, overlap: int) -> list[str]:
    spans = [m.span() for m in _TOKEN.finditer(text)]
    if len(spans) <= max_tokens:
        return [text.strip()] if text.strip() else []
    pieces: list[str] = []
    start = 0
    while start < len(spans):
        end = min(start + max_tokens, len(spans))
        if end < len(spans):
            end = _sentence_boundary(text, spans, start, end)
        pieces.append(text[spans[start][0] : spans[end - 1][1]].strip())
        if end >= len(spans):
            break
        start = max(end - overlap, start + 1)
    return [p for p in pieces if p]


def _sentence_boundary(text: str, spans: list[tuple[int, int]], start: int, end: int) -> int:
    """Move ``end`` back to just after a sentence end, if one is in the window's last third."""
    floor = start + (end - start) * 2 // 3
    for i in range(end - 1, floor, -1):  # end < len(spans), so spans[i + 1] exists
        if _SENTENCE_END.match(text, spans[i][0]) or "\n" in text[spans[i][1] : spans[i + 1][0]]:
            return i + 1
    return end


def _title(section: Section) -> str:
    return TITLE_SEPARATOR.join(h for h in section.headings if h)


def chunk_document(doc: ParsedDocument, *, max_tokens: int = 256, overlap: int = 40) -> list[Chunk]:
    """Chunks of at most ``max_tokens``; short neighbours with the same headings and page merge."""
    if overlap >= max_tokens:
        raise ValueError("overlap must be smaller than max_tokens")
    chunks: list[Chunk] = []
    pending: Chunk | None = None
    pending_tokens = 0
    for section in doc.sections:
        title = _title(section)
        pages = [section.page] if section.page else []
        for piece in _split(section.text, max_tokens, overlap):
            tokens = count_tokens(piece)
            if (
                pending is not None
                and pending.title == title
                and pending.pages == pages  # a page is a boundary: references name their page
                and pending_tokens + tokens <= max_tokens
            ):
                pending.text = f"{pending.text}\n{piece}"
                pending_tokens += tokens
                continue
            if pending is not None:
                chunks.append(pending)
            pending, pending_tokens = Chunk(piece, title, list(pages)), tokens
    if pending is not None:
        chunks.append(pending)
    return chunks


@dataclass(frozen=True, slots=True)
class ChunkRule:
    """A knowledge base's own chunking, in characters (the OpenAPI's ChunkSize/OverlapSize/Separator)."""

    size: int
    overlap: int
    separator: str = ""


def _cut(text: str, size: int, overlap: int) -> list[str]:
    pieces, start = [], 0
    while start < len(text):
        pieces.append(text[start : start + size])
        if start + size >= len(text):
            break
        start += size - overlap
    return pieces


def chunk_by_characters(doc: ParsedDocument, rule: ChunkRule) -> list[Chunk]:
    """Chunks of at most ``rule.size`` characters: each section is split at ``rule.separator``
    (when given), neighbouring pieces are packed together up to the size, and a piece longer
    than the size is cut with ``rule.overlap`` characters shared between its parts."""
    if not 0 <= rule.overlap < rule.size:
        raise ValueError("overlap must be smaller than the chunk size")
    chunks: list[Chunk] = []
    for section in doc.sections:
        title = _title(section)
        pages = [section.page] if section.page else []
        parts = section.text.split(rule.separator) if rule.separator else [section.text]
        pending = ""
        for part in (p.strip() for p in parts):
            if not part:
                continue
            joined = f"{pending}{rule.separator or chr(10)}{part}" if pending else part
            if len(joined) <= rule.size:
                pending = joined
                continue
            if pending:
                chunks.append(Chunk(pending, title, list(pages)))
            *full, pending = _cut(part, rule.size, rule.overlap)
            chunks.extend(Chunk(piece, title, list(pages)) for piece in full)
        if pending:
            chunks.append(Chunk(pending, title, list(pages)))
    return chunks


def chunk_records(table: Table) -> list[Chunk]:
    """One chunk per row of a structured table; its text is ``header: value`` pairs."""
    chunks = []
    for number, row in enumerate(table.rows, start=1):
        text = "; ".join(f"{h}: {row[h]}" for h in table.headers if row.get(h, ""))
        if text:
            chunks.append(Chunk(text=text, title=f"row {number}", record=dict(row)))
    return chunks
