"""Failed authentications are limited per source address, on every face: after the budget
the address gets 429 (in the face's shape) even with a good key; other addresses do not."""

from __future__ import annotations

import httpx
import pytest

from tests.support import LiveServer, make_settings


@pytest.fixture
def strict_server(tmp_path, database_url):
    live = LiveServer(make_settings(tmp_path / "home", database_url, auth_failures_per_minute=3)).start()
    yield live
    live.stop()


def client_from(server: LiveServer, address: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_failed_authentications_are_limited_per_address(strict_server):
    server = strict_server
    app_id = server.app()
    good = server.auth()
    body = {"input": {"prompt": "hi"}}
    with client_from(server, "127.0.0.2") as attacker, client_from(server, "127.0.0.3") as neighbour:
        failures = [
            attacker.post(f"/api/v1/apps/{app_id}/completion", json=body, headers={"Authorization": "Bearer sk-guess"}),
            attacker.get("/manage/v1/apps", headers={"Authorization": "Bearer sk-guess-2"}),
            attacker.get("/manage/v1/workspaces", headers={"Authorization": "Bearer not-the-admin-token"}),
        ]
        assert [r.status_code for r in failures] == [401, 401, 403]
        limited = attacker.post(f"/api/v1/apps/{app_id}/completion", json=body, headers=good)
        assert limited.status_code == 429, limited.text
        assert limited.json()["code"] == "Throttling.RateQuota" and set(limited.json()) == {"code", "message", "request_id"}
        assert int(limited.headers["retry-after"]) >= 1
        # The OpenAPI face answers in its envelope; the session-file face in its own.
        openapi = attacker.get("/ws1/memories", headers={"x-acs-bearer-token": "sk-guess"})
        assert openapi.status_code == 429 and openapi.json()["Code"] == "Throttling.RateQuota", openapi.text
        files = attacker.post("/manage/v1/files/ListFile", json={}, headers=good)
        assert files.status_code == 429 and files.json()["Code"] == "Throttling.RateQuota", files.text
        # Another address is not affected, and successes never count.
        for _ in range(5):
            assert neighbour.post(f"/api/v1/apps/{app_id}/completion", json=body, headers=good).status_code == 200
