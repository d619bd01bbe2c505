"""What a knowledge base takes is what its docs say: the images, audio and video that
session files read (OCR, speech to text) are refused by a knowledge base — the same bytes
taken as a session file are accepted (and an image read by OCR)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.files.conftest import call, make_png, upload, wait_final
from tests.support import LiveServer

MEETING = Path(__file__).parent / "data" / "meeting_zh.mp3"
# The documented types of an unstructured knowledge base (README, docs/openapi.md), no more.
KNOWLEDGE_TYPES = {".doc", ".docx", ".wps", ".ppt", ".pptx", ".xls", ".xlsx", ".pdf", ".md", ".markdown",
                   ".txt", ".html", ".htm", ".csv"}


def _base(live: LiveServer) -> str:
    response = live.http.post("/manage/v1/knowledge/bases", json={"name": "docs"}, headers=live.auth())
    assert response.status_code == 201, response.text
    return response.json()["index_id"]


def _media(tmp_path: Path) -> dict[str, bytes]:
    return {
        "card.png": make_png(tmp_path / "card.png", ["Vivid 7 price 2999 yuan"]),
        "meeting.mp3": MEETING.read_bytes(),
        "meeting.mp4": b"\x00\x00\x00\x18ftypmp42" + MEETING.read_bytes(),  # refused by its name alone
    }


@pytest.mark.parametrize("name", ["card.png", "meeting.mp3", "meeting.mp4"])
def test_a_knowledge_base_refuses_media_a_session_file_takes(live: LiveServer, tmp_path: Path, name: str) -> None:
    data = _media(tmp_path)[name]
    index_id = _base(live)
    refused = live.http.post(
        f"/manage/v1/knowledge/bases/{index_id}/files", files=[("files", (name, data))], headers=live.auth()
    )
    body = refused.json()
    assert refused.status_code == 400, body
    assert body["code"] == "InvalidParameter" and body["request_id"] == refused.headers["x-request-id"]
    suffix = Path(name).suffix
    assert f"Unsupported file type '{suffix}'" in body["message"]
    listed = set(body["message"].split("takes: ")[1].split(", "))
    assert listed == KNOWLEDGE_TYPES  # the message names exactly the documented types
    files = live.http.get(f"/manage/v1/knowledge/bases/{index_id}/files", headers=live.auth()).json()["files"]
    assert files == []  # nothing stored

    file_id = upload(live, name, data)  # the same bytes as a session file: accepted
    assert file_id.startswith("file_session_")
    if name == "card.png":
        final = wait_final(live, file_id)
        assert final["Status"] == "FILE_IS_READY", final
        assert final["ChunkCount"] >= 1
    else:  # speech to text is slow here: accepted and being processed is what this test needs
        described = call(live, "DescribeFile", {"FileId": file_id}).json()["Data"]
        assert described["Status"] not in {"PARSE_FAILED", "SAFE_CHECK_FAILED", "INDEX_BUILDING_FAILED"}
    assert call(live, "DeleteFile", {"FileId": file_id}).status_code == 200
