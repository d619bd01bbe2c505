"""The safety check judges bytes, not names: disguised executables, archive and image
bombs, wrong content and blocked terms are refused (SAFE_CHECK_FAILED, bytes removed)."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

from openbailian.files.safety import SafetyLimits, UnsafeFile, check_file, check_text
from tests.files.conftest import make_docx, make_png, upload, wait_final

LIMITS = SafetyLimits()


def _bomb(path: Path, megabytes: int = 20) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (megabytes * 2**20))
    return path


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("report.pdf", b"MZ\x90\x00" + b"\0" * 200, "executable"),
        ("notes.txt", b"\x7fELF\x02\x01\x01" + b"\0" * 200, "executable"),
        ("run.md", b"#!/bin/sh\nrm -rf /\n", "executable"),
        ("photo.png", b"%PDF-1.4\n%fake\n", "not the '.png'"),
        ("report.pdf", b"PK\x03\x04" + b"\0" * 100, "not the '.pdf'"),
        ("notes.txt", bytes(range(256)) * 4, "not text"),
        ("song.mp3", b"just some words, not audio", "not audio"),
        ("old.doc", b"plain text pretending to be Word", "not the '.doc'"),
        ("empty.txt", b"", "empty"),
    ],
)
def test_content_is_sniffed(tmp_path: Path, name, content, reason) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsafeFile, match=reason):
        check_file(path, name, LIMITS)


def test_real_files_pass(tmp_path: Path) -> None:
    make_docx(tmp_path / "a.docx")
    assert check_file(tmp_path / "a.docx", "a.docx", LIMITS) in {"docx", "zip"}
    make_png(tmp_path / "a.png", ["hello"])
    assert check_file(tmp_path / "a.png", "a.png", LIMITS) == "png"
    (tmp_path / "a.md").write_text("# 标题\n中文内容", encoding="utf-8")
    assert check_file(tmp_path / "a.md", "a.md", LIMITS) == "text"


def test_zip_bombs_are_refused_by_ratio_and_by_total(tmp_path: Path) -> None:
    with pytest.raises(UnsafeFile, match="Decompression bomb.*times"):
        check_file(_bomb(tmp_path / "b.docx"), "b.docx", LIMITS)
    lenient = dataclasses.replace(LIMITS, max_zip_ratio=1e9, max_unzipped_bytes=5 * 2**20)
    with pytest.raises(UnsafeFile, match="Decompression bomb.*bytes"):
        check_file(_bomb(tmp_path / "c.docx"), "c.docx", lenient)


def test_documents_embedding_executables_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.pptx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("ppt/embeddings/setup.exe", b"MZ" + b"\0" * 100)
    with pytest.raises(UnsafeFile, match="embeds an executable"):
        check_file(path, "d.pptx", LIMITS)


def test_image_bombs_are_refused(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("1", (10_000, 8_500)).save(tmp_path / "huge.png")  # 85 Mpx, a few KB
    with pytest.raises(UnsafeFile, match="pixels"):
        check_file(tmp_path / "huge.png", "huge.png", LIMITS)


def test_blocklist_is_case_insensitive() -> None:
    limits = dataclasses.replace(LIMITS, blocklist=("Forbidden Word",))
    check_text("harmless", limits)
    with pytest.raises(UnsafeFile, match="blocked term"):
        check_text("this has a FORBIDDEN word in it", limits)


def test_unsafe_upload_ends_safe_check_failed_without_bytes(live, leftovers, tmp_path: Path) -> None:
    before = leftovers.counts()
    bomb = _bomb(tmp_path / "bomb.docx").read_bytes()
    disguised = b"MZ\x90\x00" + b"\0" * 500
    bomb_id = upload(live, "bomb.docx", bomb)
    exe_id = upload(live, "invoice.pdf", disguised)
    for file_id, reason in [(bomb_id, "Decompression bomb"), (exe_id, "executable")]:
        final = wait_final(live, file_id)
        assert final["Status"] == "SAFE_CHECK_FAILED" and reason in final["FailureReason"]
    after = leftovers.counts()
    assert after["objects"] == before["objects"] and after["documents"] == before["documents"]
    assert after["files"] == before["files"] + 2


def test_blocked_content_fails_after_parsing_and_leaves_no_index(live, files, leftovers) -> None:
    original = files.limits
    files.limits = dataclasses.replace(original, blocklist=("launch codes",))
    try:
        before = leftovers.counts()
        file_id = upload(live, "plan.txt", b"Here are the LAUNCH CODES for tomorrow.")
        final = wait_final(live, file_id)
    finally:
        files.limits = original
    assert final["Status"] == "SAFE_CHECK_FAILED" and "launch codes" in final["FailureReason"]
    after = leftovers.counts()
    assert (after["objects"], after["documents"], after["chunks"]) == (
        before["objects"], before["documents"], before["chunks"],
    )
