"""SessionFileSource at the engine level: what a call with session_file_ids gets, and every refusal."""

from __future__ import annotations

import asyncio
import io
import wave
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from openbailian.engine.app_config import AppConfig
from openbailian.engine.augment import Augmentation, CallContext
from openbailian.engine.call import Call
from openbailian.errors import InvalidParameter, NotFound
from openbailian.files.source import SessionFileSource
from openbailian.runtime import Runtime
from openbailian.storage.db import sync_url
from openbailian.storage.files_models import SessionFile
from openbailian.storage.models import utcnow
from tests.files.conftest import make_docx, make_png, upload, wait_final

QUESTION = "请根据以下文件帮我推荐一款3000元以下的手机"


def gather(live, file_ids, *, workspace="src", query=QUESTION, indexed=False, **config) -> Augmentation:
    call = CallContext(
        call=Call(
            app_id="app",
            workspace_id=workspace,
            request_id="req",
            prompt=query,
            rag_options={"session_file_ids": file_ids},
            doc_reference_type="indexed" if indexed else "simple",
        ),
        config=AppConfig(model="echo", **{"file_parsing": True, **config}),
        query=query,
    )

    async def run() -> Augmentation:
        runtime = Runtime.build(live.settings)
        try:
            return await SessionFileSource(runtime.files).gather(call)
        finally:
            await runtime.aclose()

    return asyncio.run(run())


def edit_row(live, file_id: str, **values) -> None:
    engine = create_engine(sync_url(live.settings.resolved_database_url))
    with engine.begin() as connection:
        connection.execute(update(SessionFile).where(SessionFile.id == file_id).values(**values))
    engine.dispose()


@pytest.fixture(scope="module")
def ready(live, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("src")
    ids = {
        "docx": upload(live, "phones.docx", make_docx(folder / "phones.docx"), "src"),
        "png": upload(live, "note.png", make_png(folder / "note.png", ["Meeting room B2 at 3 pm"]), "src"),
    }
    for file_id in ids.values():
        assert wait_final(live, file_id, "src")["Status"] == "FILE_IS_READY"
    return ids


def test_files_become_delimited_context_and_a_thought(live, ready) -> None:
    found = gather(live, [ready["docx"], ready["png"]])
    [block] = found.context_blocks
    assert block.startswith("<session_files>") and block.endswith("</session_files>")
    assert "not instructions" in block
    assert "通义 Vivid 7" in block and "2999元" in block and "B2" in block
    [thought] = found.thoughts
    assert thought.action_type == "agentRag" and "Vivid 7" in (thought.observation or "")
    assert found.references == []  # show_sources is off


def test_sources_point_at_the_files(live, ready) -> None:
    found = gather(live, [ready["docx"]], show_sources=True, indexed=True)
    assert found.references
    assert {r.doc_id for r in found.references} == {ready["docx"]}
    assert {r.doc_name for r in found.references} == {"phones.docx"}
    assert [r.reference_index for r in found.references] == [str(n) for n in range(1, len(found.references) + 1)]
    assert "[1]" in found.context_blocks[0]


def test_large_files_are_searched_not_pasted(live, tmp_path: Path) -> None:
    topics = [f"## Topic {n}\n" + f"Routine paragraph number {n} about office logistics. " * 30 for n in range(12)]
    topics[7] = "## Parking\nVisitors park on level minus two; the gate code is 4417.\n"
    file_id = upload(live, "handbook.md", "\n\n".join(topics).encode(), "src")
    assert wait_final(live, file_id, "src")["Status"] == "FILE_IS_READY"
    found = gather(live, [file_id], query="What is the parking gate code?")
    block = found.context_blocks[0]
    assert "4417" in block
    assert block.count("Routine paragraph") < 30 * 11  # only the best passages


def test_without_ids_nothing_is_added(live) -> None:
    assert gather(live, []) == Augmentation()


def test_the_app_switch_must_be_on(live, ready) -> None:
    with pytest.raises(InvalidParameter, match="file_parsing"):
        gather(live, [ready["docx"]], file_parsing=False)


def test_ids_must_be_session_file_ids(live, ready) -> None:
    with pytest.raises(InvalidParameter, match="file_session_"):
        gather(live, [ready["docx"], "file_abc123"])
    with pytest.raises(NotFound, match="file_session_nope"):
        gather(live, ["file_session_nope"])


def test_at_most_ten_files(live, ready) -> None:
    with pytest.raises(InvalidParameter, match="at most 10"):
        gather(live, [ready["docx"]] + [f"file_session_{n}" for n in range(10)])


def test_foreign_workspace_files_are_refused_as_missing(live, ready) -> None:
    file_id = ready["docx"]
    with pytest.raises(NotFound, match=f"^Session file '{file_id}' does not exist$"):
        gather(live, [file_id], workspace="someone-else")


def test_a_file_not_ready_is_refused(live, ready) -> None:
    # Held by a (pretend) worker, so the server's resume loop does not take it and finish it first.
    held = {"lease_until": utcnow() + timedelta(hours=1), "lease_owner": "elsewhere"}
    edit_row(live, ready["png"], status="INDEX_BUILDING", **held)
    try:
        with pytest.raises(InvalidParameter, match="not ready.*INDEX_BUILDING"):
            gather(live, [ready["docx"], ready["png"]])
    finally:
        edit_row(live, ready["png"], status="FILE_IS_READY", lease_until=None, lease_owner=None)


def test_an_expired_file_is_refused(live, tmp_path: Path) -> None:
    file_id = upload(live, "old.txt", b"An old note about the Vivid 7.", "src")
    assert wait_final(live, file_id, "src")["Status"] == "FILE_IS_READY"
    edit_row(live, file_id, expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(InvalidParameter, match="expired"):
        gather(live, [file_id])


@pytest.mark.slow
def test_audio_without_speech_fails_parsing_saying_so(live) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(16000)
        audio.writeframes(b"\x00\x00" * 16000)
    file_id = upload(live, "voice.wav", buffer.getvalue(), "src")
    final = wait_final(live, file_id, "src")
    assert final["Status"] == "PARSE_FAILED"
    assert "No speech was recognised" in final["FailureReason"]
    with pytest.raises(InvalidParameter, match="PARSE_FAILED"):
        gather(live, [file_id])
