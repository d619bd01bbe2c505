"""``openbailian files …``: upload does the three steps and waits; describe/list/delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openbailian.cli import app

runner = CliRunner()


def run(*args: str) -> dict:
    result = runner.invoke(app, ["files", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_upload_describe_list_delete_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBAILIAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENBAILIAN_DEFAULT_MODEL", "echo")
    note = tmp_path / "note.md"
    note.write_text("# Plan\nThe demo is on Thursday.", encoding="utf-8")
    uploaded = run("upload", str(note), "--workspace", "w1")
    assert uploaded["file_id"].startswith("file_session_") and uploaded["status"] == "FILE_IS_READY"
    assert run("describe", uploaded["file_id"], "-w", "w1")["Status"] == "FILE_IS_READY"
    assert [f["FileId"] for f in run("list", "-w", "w1")["files"]] == [uploaded["file_id"]]
    assert run("delete", uploaded["file_id"], "-w", "w1")["deleted"] is True
    assert run("list", "-w", "w1")["files"] == []
    assert not any(p.is_file() for p in (tmp_path / "home" / "objects").rglob("*"))


def test_upload_failure_exits_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBAILIAN_HOME", str(tmp_path / "home"))
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"MZ" + b"\0" * 64)
    result = runner.invoke(app, ["files", "upload", str(fake), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "SAFE_CHECK_FAILED"
    unsupported = tmp_path / "tool.exe"
    unsupported.write_bytes(b"MZ")
    result = runner.invoke(app, ["files", "upload", str(unsupported), "--json"])
    assert result.exit_code == 1 and ".exe" in result.output


def test_upload_to_a_server(live, tmp_path: Path) -> None:
    note = tmp_path / "remote.txt"
    note.write_text("Remote upload works.", encoding="utf-8")
    uploaded = run("upload", str(note), "--url", live.url, "--api-key", live.key("ws-cli"))
    assert uploaded["status"] == "FILE_IS_READY"
    described = live.http.post("/manage/v1/files/DescribeFile", json={"FileId": uploaded["file_id"]},
                               headers=live.auth("ws-cli")).json()
    assert described["Data"]["FileName"] == "remote.txt"


def test_upload_and_delete_with_the_s3_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> None:
    """The CLI uploads in-process (not through the lease's presigned URL) into the bucket."""
    from tests.files.s3support import bucket_keys, s3_settings

    monkeypatch.setenv("OPENBAILIAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENBAILIAN_DEFAULT_MODEL", "echo")
    for name, value in s3_settings(s3_endpoint).items():
        monkeypatch.setenv(f"OPENBAILIAN_{name.upper()}", value)
    before = bucket_keys(s3_endpoint)
    note = tmp_path / "note.md"
    note.write_text("# Plan\nThe demo is on Thursday.", encoding="utf-8")
    uploaded = run("upload", str(note), "--workspace", "w-s3")
    assert uploaded["status"] == "FILE_IS_READY", uploaded
    assert any("/session/w-s3/" in key for key in bucket_keys(s3_endpoint) - before)
    assert run("delete", uploaded["file_id"], "-w", "w-s3")["deleted"] is True
    assert bucket_keys(s3_endpoint) == before
    assert not any(p.is_file() for p in (tmp_path / "home").rglob("*.md"))
