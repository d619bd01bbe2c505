"""The composition root: one server starts each feature's background work once and closes it once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import LiveServer, make_settings


def _count_calls(monkeypatch: pytest.MonkeyPatch, calls: list[str], name: str, worker: Any) -> None:
    for method in ("start", "aclose"):
        original = getattr(worker, method)

        async def counted(*args: Any, _original: Any = original, _label: str = f"{name}.{method}", **kwargs: Any) -> Any:
            calls.append(_label)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(worker, method, counted)


def test_a_server_starts_and_closes_session_files_and_knowledge_once(tmp_path, monkeypatch) -> None:
    server = LiveServer(make_settings(tmp_path))
    calls: list[str] = []
    _count_calls(monkeypatch, calls, "knowledge", server.runtime.knowledge)
    _count_calls(monkeypatch, calls, "files", server.runtime.files)
    server.start()
    try:
        assert server.http.get("/healthz").status_code == 200
        listed = server.http.post("/manage/v1/files/ListFile", json={}, headers=server.auth())
        assert listed.status_code == 200, listed.text
        assert calls == ["knowledge.start", "files.start"]
    finally:
        server.stop()
    assert calls == ["knowledge.start", "files.start", "files.aclose", "knowledge.aclose"]
