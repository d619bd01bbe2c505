"""Per-document budgets and cancellation of the knowledge ingestion, on a live server (and on
``openbailian worker``): a hostile document is parsed in a child process that is killed past
its time or memory budget, the document ends PARSE_FAILED saying which budget, and deleting a
document (or its base) mid-work kills the parse or stops the embedding — asserted on the
ingestor's state and the operating system's process table, never on timing."""

from __future__ import annotations

import asyncio
import multiprocessing.forkserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from openbailian.knowledge.budget import LINEAR_MAX_BYTES, parse_here
from openbailian.knowledge.chunk import ChunkRule
from openbailian.storage.knowledge_models import KnowledgeChunk
from tests.cli.test_worker import Process, api, env  # noqa: F401  (fixtures of the worker test)
from tests.knowledge.corpus import heavy_docx
from tests.support import LiveServer, make_settings, serve_in_thread, wait_until

TERMINAL = {"FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED"}
NO_ZIP_LIMIT = {"files_max_zip_ratio": 1e9}  # let the bombs past the safety check, to the parser
WORKER_ENV = {  # for the ``api`` and ``env`` fixtures of tests/cli/test_worker.py
    "OPENBAILIAN_FILES_MAX_ZIP_RATIO": "1e9",
    "OPENBAILIAN_KNOWLEDGE_PARSE_TIMEOUT_SECONDS": "3600",
    "OPENBAILIAN_KNOWLEDGE_PARSE_MEMORY_MB": "8192",
}


@pytest.fixture
def start(tmp_path: Path, database_url: str | None) -> Iterator[Any]:
    """start(**settings) → a live server with those settings (stopped after the test)."""
    servers: list[LiveServer] = []

    def starter(**overrides: Any) -> LiveServer:
        settings = make_settings(tmp_path / f"home{len(servers)}", database_url, **{**NO_ZIP_LIMIT, **overrides})
        servers.append(LiveServer(settings).start())
        return servers[-1]

    yield starter
    for server in servers:
        server.stop()


def _upload(server: LiveServer, name: str, data: bytes) -> tuple[str, str]:
    base = server.http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=server.auth()).json()
    added = server.http.post(
        f"/manage/v1/knowledge/bases/{base['index_id']}/files", files={"files": (name, data)}, headers=server.auth()
    )
    assert added.status_code == 201, added.text
    return base["index_id"], added.json()["files"][0]["file_id"]


def _document(server: LiveServer, file_id: str) -> dict[str, Any]:
    response = server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=server.auth())
    assert response.status_code == 200, response.text
    return response.json()


def _finished(server: LiveServer, file_id: str) -> dict[str, Any]:
    return wait_until(lambda: (d := _document(server, file_id))["status"] in TERMINAL and d, "ingestion", 300)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] not in {"Z", "X"}:
                found.append(int(entry.name))
    return found


def _parse_children() -> list[int]:
    """The parsing children of this process: the processes forked by its fork server."""
    server_pid = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    return _children(server_pid) if server_pid else []


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")


def _chunks_of(server: LiveServer, file_id: str) -> int:
    async def count() -> int:
        from openbailian.storage.db import Database

        db = Database(server.settings.resolved_database_url)
        try:
            async with db.session() as session:
                query = select(func.count()).select_from(KnowledgeChunk).where(KnowledgeChunk.document_id == file_id)
                return int(await session.scalar(query) or 0)
        finally:
            await db.dispose()

    return asyncio.run(count())


def test_a_document_over_its_time_budget_fails_saying_so_and_its_process_is_gone(start):
    server = start(knowledge_parse_timeout_seconds=1, knowledge_parse_memory_mb=4096)
    _, file_id = _upload(server, "million-paragraphs.docx", heavy_docx("many"))
    document = _finished(server, file_id)
    assert document["status"] == "PARSE_FAILED"
    assert "took longer than its budget of 1 s" in document["reason"], document
    # The final status is written before the ingestor lets the document go (its watch ends at
    # its next beat): the status is what callers see, and the work must then end too.
    ingestor = server.runtime.knowledge.ingestor
    wait_until(lambda: file_id not in ingestor.in_flight, "the ingestor letting the document go", timeout=30)
    assert _parse_children() == []
    assert _chunks_of(server, file_id) == 0


def test_a_document_over_its_memory_budget_fails_saying_so_and_the_server_does_not_grow(start):
    server = start(knowledge_parse_memory_mb=256, knowledge_parse_timeout_seconds=3600)
    peak = _peak_rss_kib()
    _, file_id = _upload(server, "bomb.docx", heavy_docx("many"))  # lxml's tree of it takes GBs
    document = _finished(server, file_id)
    assert document["status"] == "PARSE_FAILED"
    assert "memory budget of 256 MiB" in document["reason"] or "crashed" in document["reason"], document
    # Parsed here, the 40 MiB of XML alone (and lxml's tree of it) would raise the peak by more.
    assert _peak_rss_kib() - peak < 40 * 1024
    assert _parse_children() == []


def test_ordinary_documents_still_parse_within_the_default_budget(start):
    server = start()
    text = "# 年假制度\n每位员工每年享有15天带薪年假。\n\n# 报销\n差旅费用在30天内报销。".encode()
    _, file_id = _upload(server, "hr.md", text)
    document = _finished(server, file_id)
    assert document["status"] == "FILE_IS_READY", document
    assert _chunks_of(server, file_id) > 0


def test_small_text_files_are_parsed_without_a_child_and_big_ones_within_the_budget(start):
    server = start(knowledge_parse_memory_mb=1)
    ingestor = server.runtime.knowledge.ingestor
    where: dict[str, bool | None] = {}
    ingestor.listeners.append(
        lambda file_id, status: status == "PARSE_SUCCESS" and where.update({file_id: ingestor.in_flight[file_id].parsed_in_child})
    )
    line = "每位员工每年享有15天带薪年假。\n"
    files = {
        "hr.md": f"# 年假\n{line}".encode(), "hr.txt": line.encode(),
        "big.txt": (line * 12_000).encode(),  # 540 KB, past LINEAR_MAX_BYTES: a child, which 1 MiB cannot hold
    }
    ids = {name: _upload(server, name, data)[1] for name, data in files.items()}
    done = {name: _finished(server, file_id) for name, file_id in ids.items()}
    assert done["hr.md"]["status"] == done["hr.txt"]["status"] == "FILE_IS_READY"
    assert where == {ids["hr.md"]: False, ids["hr.txt"]: False}
    assert done["big.txt"]["status"] == "PARSE_FAILED"
    assert "memory budget of 1 MiB" in done["big.txt"]["reason"] or "crashed" in done["big.txt"]["reason"], done
    assert _parse_children() == []


@pytest.mark.parametrize(("name", "size", "rule", "here"), [
    ("a.txt", 1000, None, True), ("a.MD", 1000, None, True), ("a.markdown", LINEAR_MAX_BYTES, None, True),
    ("a.txt", LINEAR_MAX_BYTES + 1, None, False), ("a.html", 1000, None, False), ("a.docx", 1000, None, False),
    ("a.txt", 1000, ChunkRule(500, 100), True), ("a.txt", 1000, ChunkRule(400, 300), True),
    # 10 characters new per chunk of 100: ten copies of the text, its memory not bounded enough
    ("a.txt", 1000, ChunkRule(100, 90), False),
])
def test_what_is_parsed_without_a_child(name, size, rule, here):
    assert parse_here(Path(name).suffix, "unstructured", size, rule) is here
    assert parse_here(Path(name).suffix, "structured", size, rule) is False


@pytest.mark.parametrize("what", ["document", "base"])
def test_deleting_mid_parse_kills_the_parse_and_stores_nothing(start, what):
    server = start(knowledge_parse_timeout_seconds=3600, knowledge_parse_memory_mb=8192)
    ingestor = server.runtime.knowledge.ingestor
    base_id, file_id = _upload(server, "million-paragraphs.docx", heavy_docx("many"))
    pid = wait_until(lambda: (work := ingestor.in_flight.get(file_id)) and work.child_pid, "a parsing child")
    assert _alive(pid) and ingestor.in_flight[file_id].stage == "PARSING"

    path = f"/manage/v1/knowledge/files/{file_id}" if what == "document" else f"/manage/v1/knowledge/bases/{base_id}"
    assert server.http.delete(path, headers=server.auth()).status_code == 204

    wait_until(lambda: file_id not in ingestor.in_flight, "the ingestor letting the document go")
    wait_until(lambda: not _alive(pid), "the parsing child ending")
    assert _parse_children() == []
    assert server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=server.auth()).status_code == 404
    assert _chunks_of(server, file_id) == 0
    stored = server.settings.home / "knowledge" / "files"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


@pytest.fixture
def held_embeddings() -> Iterator[tuple[str, list[int], threading.Event]]:
    """An /embeddings endpoint that holds every request until the event is set."""
    calls: list[int] = []
    gate = threading.Event()

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        calls.append(len(body["input"]))
        await asyncio.to_thread(gate.wait)
        return JSONResponse({"data": [{"index": i, "embedding": [1.0, 0.0, 0.0, 0.0]} for i in range(len(body["input"]))]})

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
    with serve_in_thread(app) as url:
        try:
            yield f"{url}/v1", calls, gate
        finally:
            gate.set()


def test_deleting_mid_embedding_stops_it_between_batches_and_stores_nothing(start, held_embeddings):
    url, calls, gate = held_embeddings
    server = start(knowledge_embedding_base_url=url, knowledge_embedding_dim=4)
    ingestor = server.runtime.knowledge.ingestor
    sections = "\n\n".join(f"# Section {i}\nParagraph number {i} of a long manual." for i in range(200))
    _, file_id = _upload(server, "manual.md", sections.encode())
    wait_until(lambda: calls, "the first embedding batch")  # held there
    assert ingestor.in_flight[file_id].stage == "INDEX_BUILDING"

    assert server.http.delete(f"/manage/v1/knowledge/files/{file_id}", headers=server.auth()).status_code == 204
    wait_until(lambda: file_id not in ingestor.in_flight, "the ingestor letting the document go")
    assert len(calls) == 1  # of the 200 chunks' batches, only the one in progress was sent
    gate.set()
    assert _chunks_of(server, file_id) == 0


def test_embedding_past_its_budget_fails_saying_so(start, held_embeddings):
    url, calls, gate = held_embeddings
    gate.set()  # answers at once; the budget is spent before any batch comes back
    server = start(knowledge_embedding_base_url=url, knowledge_embedding_dim=4, knowledge_embed_timeout_seconds=1e-6)
    sections = "\n\n".join(f"# Section {i}\nParagraph number {i} of a long manual." for i in range(200))
    _, file_id = _upload(server, "manual.md", sections.encode())
    document = _finished(server, file_id)
    assert document["status"] == "INDEX_BUILDING_FAILED"
    assert "Embedding took longer than its budget" in document["reason"], document
    assert len(calls) <= 1  # checked between batches: none sent after the budget ran out
    assert _chunks_of(server, file_id) == 0


def test_too_many_chunks_fail_the_document_saying_so(start):
    server = start(knowledge_max_chunks=5)
    sections = "\n\n".join(f"# Section {i}\nParagraph number {i}." for i in range(20))
    _, file_id = _upload(server, "manual.md", sections.encode())
    document = _finished(server, file_id)
    assert document["status"] == "PARSE_FAILED"
    assert "more than the limit of 5 per document" in document["reason"], document


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def test_deleting_stops_the_parse_in_openbailian_worker(api, env, tmp_path: Path):  # noqa: F811
    worker = Process(["worker", "--log-level", "info"], env, tmp_path / "worker.log")
    try:
        base = api.post("/manage/v1/knowledge/bases", json={"name": "kb"}).json()["index_id"]
        added = api.post(f"/manage/v1/knowledge/bases/{base}/files",
                         files=[("files", ("million-paragraphs.docx", heavy_docx("many")))])
        assert added.status_code == 201, added.text
        file_id = added.json()["files"][0]["file_id"]
        # The worker → its fork server → the parsing child.
        wait_until(lambda: api.get(f"/manage/v1/knowledge/files/{file_id}").json()["status"] == "PARSING",
                   "the worker parsing", 180)
        workers_children = wait_until(
            lambda: [p for p in _descendants(worker.popen.pid) if p not in _children(worker.popen.pid)],
            "a parsing child of the worker", 180,
        )
        assert api.delete(f"/manage/v1/knowledge/files/{file_id}").status_code == 204
        wait_until(lambda: not any(_alive(p) for p in workers_children), "the worker's parsing child ending")
        assert worker.popen.poll() is None, worker.output()
    finally:
        assert worker.stop() == 0, worker.output()


MAIN_SCRIPT = """
import asyncio, sys
from pathlib import Path
from openbailian.knowledge.budget import Budget, prepare, run_in_child

with open(sys.argv[1], "a") as runs:  # every run of this script's top level, main or child
    runs.write(__name__ + "\\n")

async def parse_twice(document):
    for _ in range(2):
        prepared = await run_in_child(prepare, document, document.name, "unstructured", budget=Budget(60, 1024))
        print(len(prepared.chunks))

if __name__ == "__main__":
    asyncio.run(parse_twice(Path(sys.argv[2])))
"""


def test_a_parsing_child_does_not_run_the_main_script_again(tmp_path: Path) -> None:
    """``openbailian`` is a script: a child that re-ran it imported the whole CLI before each
    document (seconds each); its work needs nothing from it."""
    import subprocess
    import sys

    script, runs, document = tmp_path / "main.py", tmp_path / "runs.txt", tmp_path / "note.md"
    script.write_text(MAIN_SCRIPT)
    document.write_text("# 年假\n每位员工每年享有15天带薪年假。", encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), str(runs), str(document)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]  # both children parsed the document
    assert runs.read_text().split() == ["__main__"]  # and neither ran the script
