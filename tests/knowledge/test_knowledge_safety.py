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


def words_docx(mebibytes: float = 3) -> bytes:
    """An ordinary .docx of varied words: inflates to ``mebibytes`` MiB at a ratio of a few times."""
    import random

    import docx

    rng = random.Random(7)
    vocabulary = ["年假", "policy", "报销", "employee", "travel", "expense", "手机", "report", "quarter", "价格"]
    document = docx.Document()
    target = int(mebibytes * 1024 * 1024)
    written = 0
    while written < target:
        line = " ".join(rng.choice(vocabulary) + str(rng.randrange(10_000)) for _ in range(40))
        document.add_paragraph(line)
        written += len(line.encode()) + 60  # and its XML
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def start(tmp_path, database_url):
    from tests.support import LiveServer, make_settings

    servers = []

    def starter(**overrides):
        settings = make_settings(tmp_path / f"home{len(servers)}", database_url, **overrides)
        servers.append(LiveServer(settings).start())
        return servers[-1]

    yield starter
    for server in servers:
        server.stop()


def _upload(server, name, data):
    base = server.http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=server.auth()).json()
    url = f"/manage/v1/knowledge/bases/{base['index_id']}/files"
    return url, server.http.post(url, files={"files": (name, data)}, headers=server.auth())


@pytest.mark.parametrize(
    "limits,reason",
    [
        ({"files_max_zip_ratio": 1.5}, "inflates more than 1.5 times its size"),
        ({"files_max_unzipped_bytes": 1024 * 1024}, "inflates past 1048576 bytes"),
        ({"files_max_zip_members": 3}, "members, more than 3"),
    ],
)
def test_knowledge_uploads_are_held_to_the_zip_limits_of_the_settings(start, limits, reason):
    data = words_docx()
    server = start(**limits)
    url, response = _upload(server, "words.docx", data)
    assert response.status_code == 400, response.text
    assert reason in response.json()["message"], response.json()
    assert server.http.get(url, headers=server.auth()).json()["files"] == []
    stored = server.settings.home / "knowledge" / "files"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


def test_the_same_document_passes_the_default_zip_limits(server):
    _, response = _upload(server, "words.docx", words_docx())
    assert response.status_code == 201, response.text


def test_the_safety_check_holds_no_database_connection_or_lock(start, monkeypatch):
    """While one upload's check runs (held here until another write went through), the
    database is free: another request writes, and the upload holds no pooled connection."""
    import threading

    from openbailian.services import knowledge as service

    server = start(worker_poll_seconds=3600, files_sweep_seconds=3600)  # no background queries
    db = server.runtime.db
    checking, written = threading.Event(), threading.Event()
    seen = {}
    real_check = service.check_document

    def held_check(path, name, limits):
        seen["connections"] = db.engine.pool.checkedout()
        seen["sqlite_write_lock"] = db._write_lock.locked() if db._write_lock is not None else False
        checking.set()
        seen["other_write_done"] = written.wait(60)
        return real_check(path, name, limits)

    monkeypatch.setattr(service, "check_document", held_check)
    base = server.http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=server.auth()).json()
    result = {}
    upload = threading.Thread(target=lambda: result.update(response=server.http.post(
        f"/manage/v1/knowledge/bases/{base['index_id']}/files", files={"files": ("notes.md", b"# Notes\nhello")},
        headers=server.auth(),
    )))
    upload.start()
    try:
        assert checking.wait(60), "the upload never reached the safety check"
        other = server.http.post("/manage/v1/knowledge/bases", json={"name": "other"}, headers=server.auth())
        assert other.status_code == 201, other.text
        written.set()
    finally:
        written.set()
        upload.join(60)
    assert result["response"].status_code == 201, result["response"].text
    assert seen == {"connections": 0, "sqlite_write_lock": False, "other_write_done": True}
