"""Data at rest is private to its owner under umask 022: the home folder 0700; the
database, its -wal/-shm, keys, documents and session-file bytes 0600."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from tests.support import POSTGRES_URL, LiveServer, make_settings


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_home_database_and_stored_files_are_private_under_umask_022(tmp_path, umask_022):
    home = tmp_path / "home"
    server = LiveServer(make_settings(home, None)).start()  # SQLite in the home folder
    try:
        app_id = server.app()
        assert server.call(app_id, {"input": {"prompt": "a private conversation"}}).status_code == 200
        base = server.http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=server.auth()).json()
        added = server.http.post(
            f"/manage/v1/knowledge/bases/{base['index_id']}/files", files={"files": ("a.txt", b"secret notes")},
            headers=server.auth(),
        )
        assert added.status_code == 201, added.text
        data = b"session file bytes"
        lease = server.http.post(
            "/manage/v1/files/ApplyFileUploadLease",
            json={"CategoryId": "default", "CategoryType": "SESSION_FILE", "FileName": "s.txt",
                  "Md5": hashlib.md5(data).hexdigest(), "SizeInBytes": len(data)},
            headers=server.auth(),
        ).json()["Data"]
        assert server.http.put(lease["Param"]["Url"], content=data, headers=lease["Param"]["Headers"]).status_code == 200
        files = {p.name for p in home.rglob("*") if p.is_file()}
        assert {"openbailian.db", "openbailian.db-wal", "openbailian.db-shm", "secret.key", "files.key"} <= files
    finally:
        server.stop()

    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    exposed = [
        (str(p.relative_to(home)), oct(stat.S_IMODE(p.stat().st_mode)))
        for p in home.rglob("*")
        if p.is_file() and "models" not in p.relative_to(home).parts and p.stat().st_mode & 0o077
    ]
    assert exposed == []
    assert any(p.suffix == ".txt" for p in (home / "knowledge").rglob("*") if p.is_file())
    assert any(p.is_file() for p in (home / "objects").rglob("*"))


@pytest.mark.skipif(bool(POSTGRES_URL), reason="the home-folder database is SQLite")
def test_an_existing_world_readable_home_is_made_private(tmp_path, umask_022):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "openbailian.db").touch(mode=0o644)
    os.chmod(home / "openbailian.db", 0o644)
    server = LiveServer(make_settings(home, None)).start()
    server.stop()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "openbailian.db").stat().st_mode) == 0o600
