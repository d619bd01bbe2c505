"""The query path through a live server: a retrieval never waits behind a document batch, a memory
recall never waits for the default thread pool (where ingestion's work queues), and
one call's knowledge retrieval, memory recall and session-file search embed its question once."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import numpy as np

from openbailian.knowledge.embed import Embedder, PassageBatcher, QueryCache
from tests.files.conftest import upload, wait_final
from tests.knowledge.test_knowledge_api import _create, _upload, _wait
from tests.support import LiveServer


class WatchedModel:
    """The server's own model, watched: every query it embeds is recorded, and once ``hold``
    is set a passage batch runs on the model and then is held (the ingestion's model call does
    not return) until ``release`` is set."""

    def __init__(self, model: Embedder) -> None:
        self.model = model
        self.name, self.dim = model.name, model.dim
        self.queries: list[str] = []
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.embed_passages(texts)
        if self.hold.is_set():
            self.holding.set()
            self.release.wait(timeout=600)
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return self.model.embed_query(text)


def watch(server: LiveServer) -> WatchedModel:
    """Put a :class:`WatchedModel` under the server's query cache and passage batcher."""
    cache = server.runtime.knowledge.embedder
    assert isinstance(cache, QueryCache) and isinstance(cache.inner, PassageBatcher)
    watched = WatchedModel(cache.inner.inner)
    cache.inner.inner = watched
    return watched


def _retrieve(server: LiveServer, index_id: str, query: str) -> list[dict]:
    response = server.http.post(
        "/manage/v1/knowledge/retrieve", json={"query": query, "index_ids": [index_id]}, headers=server.auth()
    )
    assert response.status_code == 200, response.text
    return response.json()["chunks"]


def _status(server: LiveServer, file_id: str) -> str:
    return server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=server.auth()).json()["status"]


def _stores_docx(path: Path) -> bytes:
    import docx

    document = docx.Document()
    for number in range(60):
        document.add_heading(f"门店{number}号", level=2)
        document.add_paragraph(f"门店{number}号的营业时间是上午九点到晚上九点，地址在中山路{number}号。" * 3)
    document.save(path)
    return path.read_bytes()


def test_a_retrieval_returns_while_documents_of_another_base_are_being_embedded(server, corpus, tmp_path: Path):
    watched = watch(server)
    handbook = _create(server, "handbook")
    [hr] = _upload(server, handbook, corpus["hr"])
    assert _wait(server, hr["file_id"])["status"] == "FILE_IS_READY"
    assert _retrieve(server, handbook, "working hours")  # warm: jieba and the query session loaded

    watched.hold.set()
    big = _create(server, "big")
    paths = []
    for number in range(8):  # as many documents as the worker ingests at once: each holds a thread
        path = tmp_path / f"notes{number}.txt"
        path.write_text("\n\n".join(f"第 {number}-{i} 节：会议纪要，讨论季度预算与招聘计划。" * 8 for i in range(6)), encoding="utf-8")
        paths.append(path)
    uploaded = _upload(server, big, *paths)
    try:
        assert watched.holding.wait(timeout=300), "no document batch reached the model"
        chunks = _retrieve(server, handbook, "How many days of paid annual leave per year?")  # a new query
        assert chunks and chunks[0]["file_id"] == hr["file_id"] and "15 days" in chunks[0]["text"]
        assert "How many days of paid annual leave per year?" in watched.queries
        # It came back while the documents' batch was still in the model: none of them is ready.
        assert {_status(server, row["file_id"]) for row in uploaded} <= {"INIT", "PARSING", "PARSE_SUCCESS", "INDEX_BUILDING"}
    finally:
        watched.release.set()
    assert [_wait(server, row["file_id"])["status"] for row in uploaded] == ["FILE_IS_READY"] * 8
    assert _retrieve(server, big, "季度预算")[0]["file_id"] in {row["file_id"] for row in uploaded}


def test_one_call_embeds_its_question_once_for_knowledge_memory_and_session_files(server, corpus, tmp_path: Path):
    watched = watch(server)
    base = _create(server, "phones")
    [phones] = _upload(server, base, corpus["phones"])
    assert _wait(server, phones["file_id"])["status"] == "FILE_IS_READY"
    auth = server.auth()
    memory_id = server.http.post("/manage/v1/memories", json={}, headers=auth).json()["memory_id"]
    node = server.http.post(f"/manage/v1/memories/{memory_id}/nodes", json={"content": "用户预算：3000元以内"}, headers=auth)
    assert node.status_code == 201, node.text
    # Longer than a call takes whole (1500 tokens): the call searches its chunks with the question.
    file_id = upload(server, "stores.docx", _stores_docx(tmp_path / "stores.docx"))
    final = wait_final(server, file_id)
    assert final["Status"] == "FILE_IS_READY", (final.get("ParseErrorMessage"), final["seen"])
    app_id = server.app(knowledge_enabled=True, knowledge_base_ids=[base], memory_enabled=True, file_parsing=True)

    question = "门店17号的营业时间，以及3000元以下的手机推荐？"
    response = server.call(app_id, {
        "input": {"prompt": question, "memory_id": memory_id},
        "parameters": {"rag_options": {"session_file_ids": [file_id]}},
    })
    assert response.status_code == 200, response.text
    context = response.json()["output"]["text"]  # the echo model answers with what it was given
    assert "<session_files>" in context and "门店17号" in context  # searched, not the whole file
    assert "<knowledge>" in context and "Vivid 7" in context
    assert "<user_memory>" in context and "3000元以内" in context
    assert watched.queries.count(question) == 1, watched.queries


def _occupy_default_threads(server: LiveServer, release: threading.Event) -> threading.Event:
    """Every thread of the server loop's default executor waits on ``release`` (as ingestion's
    parses and term lists of many documents do); the returned event is set once they all wait."""
    waiting = threading.Semaphore(0)
    all_waiting = threading.Event()

    def wait() -> None:
        waiting.release()
        release.wait(timeout=600)

    workers = min(32, (os.cpu_count() or 1) + 4)  # the size of a default ThreadPoolExecutor

    def fill() -> None:
        for _ in range(workers + 4):  # the pool's threads and a queue behind them
            server.loop.run_in_executor(None, wait)

        def watch() -> None:
            for _ in range(workers):
                waiting.acquire()
            all_waiting.set()

        threading.Thread(target=watch, daemon=True).start()

    server.loop.call_soon_threadsafe(fill)
    return all_waiting


def test_a_memory_recall_of_a_new_question_does_not_wait_for_the_default_thread_pool(server):
    watched = watch(server)
    auth = server.auth()
    memory_id = server.http.post("/manage/v1/memories", json={}, headers=auth).json()["memory_id"]
    node = server.http.post(f"/manage/v1/memories/{memory_id}/nodes", json={"content": "用户住在杭州西湖区"}, headers=auth)
    assert node.status_code == 201, node.text
    app_id = server.app(memory_enabled=True)
    warm = server.call(app_id, {"input": {"prompt": "你好", "memory_id": memory_id}})  # memory index and models loaded
    assert warm.status_code == 200, warm.text

    release = threading.Event()
    try:
        assert _occupy_default_threads(server, release).wait(timeout=60), "the default executor's threads never all waited"
        question = "我住在哪个城市？"
        response = server.call(app_id, {"input": {"prompt": question, "memory_id": memory_id}}, timeout=120)
        assert response.status_code == 200, response.text
        assert "杭州西湖区" in response.json()["output"]["text"]  # the echo model repeats the recalled memory
        assert watched.queries.count(question) == 1
    finally:
        release.set()


def test_a_new_question_refused_for_its_options_answers_in_the_face_shape_and_is_embedded_once(server, corpus):
    watched = watch(server)
    base = _create(server, "handbook")
    [hr] = _upload(server, base, corpus["hr"])
    assert _wait(server, hr["file_id"])["status"] == "FILE_IS_READY"
    foreign = _create(server, "theirs", workspace="ws2")
    question = "How many days of paid annual leave per year?"

    refused = server.http.post("/manage/v1/knowledge/retrieve", json={"query": question, "index_ids": [foreign]},
                               headers=server.auth())
    assert refused.status_code == 404, refused.text
    assert refused.json()["code"] == "Index.NotFound" and foreign in refused.json()["message"]

    unknown = server.http.post("/manage/v1/knowledge/retrieve", json={"query": question, "index_ids": [base, "kb-none"]},
                               headers=server.auth())
    assert unknown.status_code == 404 and "kb-none" in unknown.json()["message"], unknown.text

    chunks = _retrieve(server, base, question)  # asked right: the answer, from the vector made meanwhile
    assert chunks[0]["file_id"] == hr["file_id"] and "15 days" in chunks[0]["text"]
    assert watched.queries.count(question) == 1, watched.queries


def test_a_call_with_session_files_and_a_file_of_its_own_does_not_wait_for_the_default_thread_pool(server, tmp_path: Path):
    # A session file long enough to be searched with the question (its tokens counted first) and
    # a file the call brings itself (input.file_list: checked and parsed during the call).
    stores = upload(server, "stores.docx", _stores_docx(tmp_path / "stores.docx"))
    final = wait_final(server, stores)
    assert final["Status"] == "FILE_IS_READY", (final.get("ParseErrorMessage"), final["seen"])
    app_id = server.app(file_parsing=True)
    own = "data:text/plain;base64," + base64.b64encode("访客须知：停车场在B2层。".encode()).decode()

    def ask(question: str) -> str:
        response = server.call(app_id, {
            "input": {"prompt": question, "file_list": [own]},
            "parameters": {"rag_options": {"session_file_ids": [stores]}},
        }, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["output"]["text"]  # the echo model answers with what it was given

    ask("门店3号在哪里？")  # warm: the parsers, jieba and the query session loaded
    release = threading.Event()
    try:
        assert _occupy_default_threads(server, release).wait(timeout=60), "the default executor's threads never all waited"
        context = ask("门店17号的营业时间？")
        assert "门店17号" in context and "门店40号" not in context  # the long file searched, not taken whole
        assert "停车场在B2层" in context  # the call's own file
    finally:
        release.set()


def test_a_retrieval_after_a_document_was_added_does_not_wait_for_the_default_thread_pool(server, corpus):
    base = _create(server, "catalogue")
    [hr] = _upload(server, base, corpus["hr"])
    assert _wait(server, hr["file_id"])["status"] == "FILE_IS_READY"
    assert _retrieve(server, base, "working hours")[0]["file_id"] == hr["file_id"]  # the base's index is built
    [phones] = _upload(server, base, corpus["phones"])  # the base moves on: the next search loads its chunks
    assert _wait(server, phones["file_id"])["status"] == "FILE_IS_READY"

    release = threading.Event()
    try:
        assert _occupy_default_threads(server, release).wait(timeout=60), "the default executor's threads never all waited"
        chunks = _retrieve(server, base, "Vivid 7 的价格是多少？")
        assert chunks[0]["file_id"] == phones["file_id"], chunks  # the document added since: searched
    finally:
        release.set()


def test_a_retrieval_after_its_document_was_replaced_shows_the_new_document(server, tmp_path: Path):
    # The replacing document's chunk may get the deleted one's id (SQLite hands the highest id out
    # again): what was shown before must not come back for it.
    base = _create(server, "rooms")
    old, new = tmp_path / "rooms-old.txt", tmp_path / "rooms-new.txt"
    old.write_text("会议室的开放时间是早上八点到十二点。", encoding="utf-8")
    new.write_text("会议室的开放时间改为下午两点到六点。", encoding="utf-8")
    [first] = _upload(server, base, old)
    assert _wait(server, first["file_id"])["status"] == "FILE_IS_READY"
    question = "会议室几点开放？"
    assert [(c["file_id"], c["text"]) for c in _retrieve(server, base, question)] == [(first["file_id"], old.read_text(encoding="utf-8"))]

    deleted = server.http.delete(f"/manage/v1/knowledge/files/{first['file_id']}", headers=server.auth())
    assert deleted.status_code == 204, deleted.text
    [second] = _upload(server, base, new)
    assert _wait(server, second["file_id"])["status"] == "FILE_IS_READY"
    chunks = _retrieve(server, base, question)
    assert [(c["file_id"], c["doc_name"], c["text"]) for c in chunks] == [
        (second["file_id"], "rooms-new.txt", new.read_text(encoding="utf-8"))
    ]
