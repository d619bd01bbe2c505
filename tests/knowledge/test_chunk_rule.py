"""A base's own chunking (CreateIndex's ChunkSize / OverlapSize / Separator), in characters."""

from __future__ import annotations

import pytest

from openbailian.knowledge.chunk import ChunkRule, chunk_by_characters
from openbailian.knowledge.parse import ParsedDocument, Section


def _doc(*texts: str) -> ParsedDocument:
    return ParsedDocument([Section(text, ("Guide",)) for text in texts], pages=1)


def test_no_chunk_is_longer_than_the_size_and_cut_pieces_overlap() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(250))
    chunks = chunk_by_characters(_doc(text), ChunkRule(size=100, overlap=20))
    assert [len(c.text) for c in chunks] == [100, 100, 90]
    assert chunks[0].text[-20:] == chunks[1].text[:20]
    assert all(c.title == "Guide" for c in chunks)


def test_the_separator_splits_and_short_pieces_are_packed_up_to_the_size() -> None:
    chunks = chunk_by_characters(_doc("alpha###beta###" + "g" * 30), ChunkRule(size=20, overlap=0, separator="###"))
    assert [c.text for c in chunks] == ["alpha###beta", "g" * 20, "g" * 10]


def test_an_overlap_as_large_as_the_size_is_refused() -> None:
    with pytest.raises(ValueError):
        chunk_by_characters(_doc("x"), ChunkRule(size=10, overlap=10))
