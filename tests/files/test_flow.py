"""The whole flow through HTTP, as the seed describes it: lease, PUT, AddFile, poll DescribeFile."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.files.conftest import (
    add,
    call,
    lease,
    make_docx,
    make_pdf,
    make_png,
    make_xlsx,
    put,
    upload,
    wait_final,
)

READY_PATH = ["INIT", "SAFE_CHECKING", "PARSING", "PARSE_SUCCESS", "INDEX_BUILDING",
              "INDEX_BUILD_SUCCESS", "FILE_IS_READY"]


def _chunk_texts(live, file_id: str) -> str:
    from sqlalchemy import create_engine, select

    from openbailian.storage.db import sync_url
    from openbailian.storage.files_models import SessionFile
    from openbailian.storage.knowledge_models import KnowledgeChunk

    engine = create_engine(sync_url(live.settings.resolved_database_url))
    try:
        with engine.connect() as connection:
            ref = connection.execute(select(SessionFile.index_ref).where(SessionFile.id == file_id)).scalar_one()
            rows = connection.execute(
                select(KnowledgeChunk.title, KnowledgeChunk.text).where(KnowledgeChunk.document_id == ref)
            )
            return "\n".join(f"{title}\n{text}" for title, text in rows)
    finally:
        engine.dispose()


def test_lease_answer_has_the_openapi_shape(live) -> None:
    response = lease(live, "a.txt", b"hello")
    assert response.status_code == 200
    body = response.json()
    assert body["Success"] is True and body["Code"] == "Success" and body["Status"] == "200"
    assert body["RequestId"] == response.headers["x-request-id"]
    data = body["Data"]
    assert data["FileUploadLeaseId"]
    assert data["Param"]["Method"] == "PUT"
    assert data["Param"]["Url"].startswith(f"{live.url}/manage/v1/files/upload/")
    assert set(data["Param"]["Headers"]) == {"X-bailian-extra", "Content-Type"}


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("phones.docx", make_docx, "Vivid 7"),
        ("handbook.pdf", make_pdf, "15 days of paid annual leave"),
        ("prices.xlsx", make_xlsx, "Stardust S9 Pro"),
    ],
)
def test_documents_become_ready(live, tmp_path: Path, name, make, expected) -> None:
    data = make(tmp_path / name)
    file_id = upload(live, name, data)
    assert file_id.startswith("file_session_")
    final = wait_final(live, file_id)
    assert final["Status"] == "FILE_IS_READY", final
    assert [s for s in final["seen"] if s in READY_PATH] == final["seen"]
    assert final["FileName"] == name and final["SizeInBytes"] == len(data)
    assert final["ChunkCount"] >= 1
    assert expected in _chunk_texts(live, file_id)
    if name.endswith(".pdf"):
        assert final["PageCount"] == 2


def test_image_text_is_read_by_ocr(live, tmp_path: Path) -> None:
    data = make_png(tmp_path / "card.png", ["Vivid 7 price 2999 yuan", "Battery 4500 mAh"])
    file_id = upload(live, "card.png", data)
    final = wait_final(live, file_id)
    assert final["Status"] == "FILE_IS_READY", final
    text = _chunk_texts(live, file_id)
    assert "2999" in text and "4500" in text


def test_list_and_delete(live, leftovers, tmp_path: Path) -> None:
    before = leftovers.counts()
    file_id = upload(live, "note.md", "# Note\nThe launch is on Friday.".encode(), workspace="ws-list")
    assert wait_final(live, file_id, "ws-list")["Status"] == "FILE_IS_READY"
    listed = call(live, "ListFile", {"MaxResults": 10}, "ws-list").json()["Data"]
    assert [f["FileId"] for f in listed["FileList"]] == [file_id] and listed["TotalCount"] == 1
    deleted = call(live, "DeleteFile", {"FileId": file_id}, "ws-list")
    assert deleted.status_code == 200 and deleted.json()["Data"] == {"FileId": file_id}
    gone = call(live, "DescribeFile", {"FileId": file_id}, "ws-list")
    assert gone.status_code == 404 and gone.json()["Success"] is False
    assert leftovers.counts() == before


def test_lease_is_spent_by_add_file(live) -> None:
    data = b"plain text for a lease"
    grant = lease(live, "t.txt", data).json()["Data"]
    assert put(live, grant, data).status_code == 200
    first = add(live, grant["FileUploadLeaseId"])
    assert first.status_code == 200
    second = add(live, grant["FileUploadLeaseId"])
    assert second.status_code == 409
    assert "already used" in second.json()["Message"]
    wait_final(live, first.json()["Data"]["FileId"])
