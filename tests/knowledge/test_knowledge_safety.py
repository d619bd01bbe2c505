"""Knowledge documents pass the session files' safety check (files/safety.py) before any
parser sees them: a zip-bomb .docx and an executable renamed .pdf are refused with their
reasons, and nothing is stored or queued."""

from __future__ import annotations

import io
import zipfile

import pytest

CONTENT_TYPES = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    b'wordprocessingml.document.main+xml"/></Types>'
)


def zip_bomb_docx() -> bytes:
    """A valid-looking .docx whose document.xml inflates to 40 MiB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        body = b"<w:document><w:body><w:p><w:r><w:t>" + b"A" * (40 * 1024 * 1024) + b"</w:t></w:r></w:p></w:body></w:document>"
        archive.writestr("word/document.xml", body)
    return buffer.getvalue()


ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x90" * 4000


@pytest.mark.parametrize(
    "name,make,reason",
    [
        ("report.docx", zip_bomb_docx, "decompression bomb"),
        ("manual.pdf", lambda: ELF, "executable"),
        ("notes.md", lambda: ELF, "executable"),
        ("page.html", lambda: b"#!/bin/sh\nrm -rf /\n", "executable"),
        ("paper.pdf", lambda: b"PK\x03\x04" + b"\x00" * 100, "not the '.pdf'"),
        ("broken.docx", lambda: b"PK\x03\x04 this is not really a zip", "not a valid office"),
    ],
)
def test_unsafe_documents_are_refused_with_their_reason(server, name, make, reason):
    data = make()
    base = server.http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=server.auth()).json()
    url = f"/manage/v1/knowledge/bases/{base['index_id']}/files"
    response = server.http.post(url, files={"files": (name, data)}, headers=server.auth())
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "InvalidParameter" and "safety check" in body["message"]
    assert reason.lower() in body["message"].lower(), body["message"]
    assert server.http.get(url, headers=server.auth()).json()["files"] == []
    stored = server.settings.home / "knowledge" / "files"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


def test_the_zip_bomb_is_small_on_the_wire_and_large_inflated():
    data = zip_bomb_docx()
    assert len(data) < 200 * 1024
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sum(m.file_size for m in archive.infolist()) > 40 * 1024 * 1024
