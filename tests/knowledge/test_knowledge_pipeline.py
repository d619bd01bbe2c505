"""Ingestion and retrieval against a real database and the bundled embedder."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from openbailian.errors import (
    InvalidParameter,
    KnowledgeBaseNotFound,
    KnowledgeFileNotFound,
    RequestTooLarge,
)
from openbailian.files.safety import SafetyLimits
from openbailian.services import knowledge as kb
from openbailian.storage.knowledge_models import KnowledgeChunk, KnowledgeDocument
from tests.knowledge.corpus import make_xlsx


async def _base(system, kind="unstructured", workspace="ws1"):
    async with system.db.transaction() as session:
        return await kb.create_base(session, workspace_id=workspace, name="kb", kind=kind)


async def _add(system, base, path: Path, **kwargs):
    [document] = await kb.upload_documents(
        system.db, base, [(path.name, path.read_bytes())], store=system.store,
        max_bytes=system.settings.knowledge_max_file_bytes, limits=SafetyLimits.of(system.settings), **kwargs,
    )
    return document


async def _status(system, document_id):
    async with system.db.session() as session:
        return await kb.get_document(session, document_id, "ws1")


async def _search(system, base_ids, query, **options):
    request = await kb.parse_search_options(system.db, "ws1", base_ids, options, system.retriever)
    return await kb.search(system.retriever, request, query, top_k=options.pop("top_k", 5) if "top_k" in options else 5)


async def test_ingest_walks_the_status_machine(knowledge, corpus):
    base = await _base(knowledge)
    document = await _add(knowledge, base, corpus["phones"])
    assert document.status == "INIT"
    assert await knowledge.ingestor.ingest(document.id) == "FILE_IS_READY"
    done = await _status(knowledge, document.id)
    assert [h["status"] for h in done.history] == [
        "INIT", "PARSING", "PARSE_SUCCESS", "INDEX_BUILDING", "INDEX_BUILD_SUCCESS", "FILE_IS_READY",
    ]
    assert done.chunks > 0 and done.reason == ""
    assert all("at" in h for h in done.history)
    assert await _leases(knowledge, document.id) == [(None, None)]


async def test_chinese_and_english_questions_find_the_right_document(knowledge, corpus):
    base = await _base(knowledge)
    phones = await _add(knowledge, base, corpus["phones"])
    hr = await _add(knowledge, base, corpus["hr"])
    await knowledge.worker.drain()

    hits = await _search(knowledge, [base.id], "请帮我推荐一款3000元以下的手机")
    assert hits[0].document_id == phones.id
    assert any("Zephyr Z9" in h.text for h in hits[:2])

    hits = await _search(knowledge, [base.id], "How many days of annual leave do employees get?")
    assert hits[0].document_id == hr.id
    assert hits[0].pages == [2]  # the leave policy is on page 2 of the PDF
    assert "15 days" in hits[0].text


async def test_headings_become_titles(knowledge, corpus):
    base = await _base(knowledge)
    await _add(knowledge, base, corpus["phones"])
    await knowledge.worker.drain()
    hits = await _search(knowledge, [base.id], "通义 Vivid 7 拍照怎么样")
    assert hits[0].title.startswith("百炼系列手机产品介绍")
    assert "通义 Vivid 7" in hits[0].title or "通义 Vivid 7" in hits[0].text


async def test_filters_narrow_to_documents_tags_and_metadata(knowledge, corpus):
    base = await _base(knowledge)
    phones = await _add(knowledge, base, corpus["phones"], tags=["product"], metadata={"dept": "sales"})
    hr = await _add(knowledge, base, corpus["hr"], tags=["policy"], metadata={"dept": "hr", "year": 2025})
    await knowledge.worker.drain()
    question = "手机价格"

    only_hr = await _search(knowledge, [base.id], question, file_ids=[hr.id])
    assert only_hr and {h.document_id for h in only_hr} == {hr.id}
    tagged = await _search(knowledge, [base.id], question, tags=["policy"])
    assert {h.document_id for h in tagged} == {hr.id}
    meta = await _search(knowledge, [base.id], question, metadata_filter={"dept": "sales"})
    assert {h.document_id for h in meta} == {phones.id}
    both = await _search(knowledge, [base.id], question, metadata_filter={"dept": "hr", "year": "2025"})
    assert {h.document_id for h in both} == {hr.id}
    none = await _search(knowledge, [base.id], question, metadata_filter={"dept": "sales", "year": "2025"})
    assert none == []
    with pytest.raises(InvalidParameter, match="unknown field"):
        await _search(knowledge, [base.id], question, metadata_filter={"colour": "red"})
    with pytest.raises(InvalidParameter):
        await _search(knowledge, [base.id], question, tags="policy")


async def test_file_ids_only_count_with_their_base(knowledge, corpus):
    first, second = await _base(knowledge), await _base(knowledge)
    phones = await _add(knowledge, first, corpus["phones"])
    hr = await _add(knowledge, second, corpus["hr"])
    await knowledge.worker.drain()
    # hr belongs to a base that is not searched: an error, not a silent whole-base search
    with pytest.raises(InvalidParameter, match=hr.id):
        await _search(knowledge, [first.id], "annual leave", file_ids=[hr.id])
    hits = await _search(knowledge, [first.id, second.id], "annual leave", file_ids=[phones.id])
    assert {h.document_id for h in hits} == {phones.id}


async def test_structured_filter_returns_exactly_the_matching_rows(knowledge, corpus):
    base = await _base(knowledge, kind="structured")
    await _add(knowledge, base, corpus["prices"])
    await knowledge.worker.drain()
    hits = await _search(knowledge, [base.id], "手机", structured_filter={"型号": "通义 Vivid 7"})
    assert sorted(h.record["价格"] for h in hits) == ["2999", "3299"]
    hits = await _search(knowledge, [base.id], "手机", structured_filter={"型号": "百炼 Zephyr Z9", "颜色": "白色"})
    assert [h.record for h in hits] == [{"型号": "百炼 Zephyr Z9", "颜色": "白色", "存储": "256GB", "价格": "2799"}]
    assert await _search(knowledge, [base.id], "手机", structured_filter={"型号": "不存在"}) == []
    with pytest.raises(InvalidParameter, match="unknown column"):
        await _search(knowledge, [base.id], "手机", structured_filter={"重量": "200g"})


async def test_structured_filter_needs_a_structured_base(knowledge, corpus):
    base = await _base(knowledge)
    with pytest.raises(InvalidParameter, match="structured knowledge base"):
        await _search(knowledge, [base.id], "x", structured_filter={"型号": "a"})


async def test_deleted_documents_never_come_back(knowledge, corpus):
    base = await _base(knowledge)
    phones = await _add(knowledge, base, corpus["phones"])
    hr = await _add(knowledge, base, corpus["hr"])
    await knowledge.worker.drain()
    assert await _search(knowledge, [base.id], "手机")  # the index is built now
    async with knowledge.db.transaction() as session:
        await kb.delete_document(session, phones.id, "ws1", knowledge.store)
    for question in ["请帮我推荐一款3000元以下的手机", "Zephyr Z9", "annual leave"]:
        hits = await _search(knowledge, [base.id], question)
        assert {h.document_id for h in hits} <= {hr.id}
    async with knowledge.db.session() as session:
        from sqlalchemy import select, text

        stored = set(await session.scalars(select(KnowledgeChunk.id).where(KnowledgeChunk.base_id == base.id)))
        if knowledge.retriever.index.name == "pgvector":  # the search rows in PostgreSQL
            live = set(await session.scalars(text(f"SELECT chunk_id FROM knowledge_chunk_search WHERE base_id = '{base.id}'")))
        else:  # the in-process index
            state = await knowledge.retriever.index.state(base.id, (await _base_row(knowledge, base.id)).version)
            live = set(state.row_of)
    assert live == stored
    stored_bytes = knowledge.settings.home / "knowledge" / "files" / base.id
    assert not list(stored_bytes.glob(f"{phones.id}*"))


async def _base_row(system, base_id):
    async with system.db.session() as session:
        return await kb.get_base(session, base_id, "ws1")


async def test_reindex_keeps_the_document_searchable_afterwards(knowledge, corpus):
    base = await _base(knowledge)
    phones = await _add(knowledge, base, corpus["phones"])
    await knowledge.worker.drain()
    async with knowledge.db.transaction() as session:
        document = await kb.reindex_document(session, phones.id, "ws1")
    assert document.status == "INIT"
    assert await _search(knowledge, [base.id], "Zephyr") == []  # not ready while re-indexing
    await knowledge.worker.drain()
    assert (await _status(knowledge, phones.id)).status == "FILE_IS_READY"
    assert (await _search(knowledge, [base.id], "Zephyr"))[0].document_id == phones.id


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        # (a broken .docx is refused at upload by the safety check: tests/knowledge/test_knowledge_safety.py)
        ("broken.pdf", b"%PDF-1.4\n garbage garbage", "damaged"),
        ("empty.txt", b"   \n\n  ", "no text"),
        # small text files are parsed without a child process: their failures read the same
        ("latin.txt", b"\xff\xfe\xff", "neither UTF-8 nor GB18030"),
    ],
)
async def test_bad_documents_fail_with_a_reason_and_do_not_block_others(knowledge, corpus, tmp_path, name, content, reason):
    base = await _base(knowledge)
    bad_path = tmp_path / name
    bad_path.write_bytes(content)
    bad = await _add(knowledge, base, bad_path)
    good = await _add(knowledge, base, corpus["phones"])
    await knowledge.worker.drain()
    failed = await _status(knowledge, bad.id)
    assert failed.status == "PARSE_FAILED"
    assert reason in failed.reason
    assert failed.history[-1]["status"] == "PARSE_FAILED"
    assert (await _status(knowledge, good.id)).status == "FILE_IS_READY"
    assert await _leases(knowledge, bad.id, good.id) == [(None, None), (None, None)]


async def _leases(system, *document_ids):
    """(lease_owner, lease_until) of each document: a finished one is claimable again at once."""
    async with system.db.session() as session:
        rows = {d.id: (d.lease_owner, d.lease_until) for d in [await session.get(KnowledgeDocument, i) for i in document_ids]}
    return [rows[i] for i in document_ids]


async def test_unsupported_and_oversized_files_are_refused_up_front(knowledge, tmp_path):
    base = await _base(knowledge)
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ....")
    with pytest.raises(InvalidParameter, match="Unsupported file type '.exe'"):
        await _add(knowledge, base, exe)
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 2048)
    knowledge.settings.knowledge_max_file_bytes = 1024
    with pytest.raises(RequestTooLarge, match="limit is 1024"):
        await _add(knowledge, base, big)
    structured = await _base(knowledge, kind="structured")
    with pytest.raises(InvalidParameter, match="structured knowledge base takes"):
        await _add(knowledge, structured, exe.with_name("a.docx") if False else _write(tmp_path / "a.txt"))
    async with knowledge.db.session() as session:
        assert await kb.list_documents(session, base.id, "ws1") == []


def _write(path: Path) -> Path:
    path.write_text("hello")
    return path


async def test_bad_tables_fail_with_a_reason(knowledge, tmp_path):
    base = await _base(knowledge, kind="structured")
    header_only = await _add(knowledge, base, make_xlsx(tmp_path / "h.xlsx", [("a", "b")]))
    duplicate = await _add(knowledge, base, make_xlsx(tmp_path / "d.xlsx", [("a", "a"), ("1", "2")]))
    await knowledge.worker.drain()
    assert "no data rows" in (await _status(knowledge, header_only.id)).reason
    assert "duplicate" in (await _status(knowledge, duplicate.id)).reason


async def test_restart_resumes_unfinished_work(knowledge, corpus):
    base = await _base(knowledge)
    document = await _add(knowledge, base, corpus["phones"])
    # a server died in the middle of parsing: status PARSING, lease gone
    async with knowledge.db.transaction() as session:
        row = await session.get(KnowledgeDocument, document.id)
        row.status, row.lease_until = "PARSING", None
    await knowledge.worker.start()
    knowledge.worker.wake()
    for _ in range(200):
        if (await _status(knowledge, document.id)).status == "FILE_IS_READY":
            break
        import asyncio

        await asyncio.sleep(0.05)
    assert (await _status(knowledge, document.id)).status == "FILE_IS_READY"


async def test_a_live_lease_is_not_taken_twice(knowledge, corpus):
    base = await _base(knowledge)
    document = await _add(knowledge, base, corpus["phones"])
    assert await knowledge.ingestor._claim(document.id)
    assert await knowledge.ingestor.ingest(document.id) is None  # held by the first claim
    assert (await _status(knowledge, document.id)).status == "INIT"


async def test_unknown_and_foreign_ids(knowledge, corpus):
    base = await _base(knowledge)
    foreign = await _base(knowledge, workspace="ws2")
    foreign_doc = await _add(knowledge, foreign, corpus["hr"])
    with pytest.raises(KnowledgeBaseNotFound):
        await _search(knowledge, ["nope"], "x")
    with pytest.raises(KnowledgeBaseNotFound):
        await _search(knowledge, [foreign.id], "x")
    with pytest.raises(KnowledgeFileNotFound):
        await _search(knowledge, [base.id], "x", file_ids=[foreign_doc.id])
    async with knowledge.db.session() as session:
        with pytest.raises(KnowledgeFileNotFound):
            await kb.get_document(session, foreign_doc.id, "ws1")


class _CallSizes:
    """The bundled embedder, recording how many texts each model call gets."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.calls: list[int] = []

    def embed_query(self, text):  # type: ignore[no-untyped-def]
        return self.inner.embed_query(text)

    def embed_passages(self, texts):  # type: ignore[no-untyped-def]
        self.calls.append(len(texts))
        return self.inner.embed_passages(texts)


async def test_many_small_documents_keep_the_model_fed_while_few_parse_at_once(settings, embedder, tmp_path):
    """Documents in work are more than those parsed: when a model call ends, the next
    documents' chunks already wait, so calls carry more documents than parse at once."""
    import asyncio

    from openbailian.knowledge.embed import PassageBatcher
    from openbailian.knowledge.ingest import PARSING_AT_ONCE
    from openbailian.knowledge.system import KnowledgeSystem
    from openbailian.storage.db import Database, migrate

    settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate, settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    sizes = _CallSizes(embedder)
    system = KnowledgeSystem.from_settings(db, settings, embedder=PassageBatcher(sizes))
    parsing, most_parsing = 0, 0
    parse = system.ingestor._parse

    async def counted_parse(*args):  # type: ignore[no-untyped-def]
        nonlocal parsing, most_parsing
        parsing += 1
        most_parsing = max(most_parsing, parsing)
        try:
            return await parse(*args)
        finally:
            parsing -= 1

    system.ingestor._parse = counted_parse
    try:
        base = await _base(system)
        sentence = "知识库中的文档会被切分成片段，每个片段生成一个向量，检索时按相似度排序。"
        for number in range(48):
            path = tmp_path / f"note{number:02d}.txt"
            path.write_text(f"第 {number} 号说明。" + sentence * 12, encoding="utf-8")  # one chunk each
            await _add(system, base, path)
        await system.worker.drain()
        async with system.db.session() as session:
            statuses = (await session.scalars(select(KnowledgeDocument.status))).all()
            chunks = len((await session.scalars(select(KnowledgeChunk.id))).all())
        assert statuses == ["FILE_IS_READY"] * 48
        assert sum(sizes.calls) == chunks >= 48
        assert most_parsing <= PARSING_AT_ONCE
        # Before, a call had the chunks of at most PARSING_AT_ONCE documents (two each here).
        assert max(sizes.calls) > 2 * PARSING_AT_ONCE, sizes.calls
    finally:
        await system.aclose()
        await db.dispose()
