"""Apps and keys are cached per process, yet every change shows at the very next call,
whichever process made it (several API processes share one database)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support import LiveServer, make_settings


def instructions_used(response) -> str:
    assert response.status_code == 200, response.text
    return json.loads(response.json()["output"]["text"])["messages"][0]["content"]


@pytest.fixture
def two_servers(tmp_path, database_url) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers on one database, as two API processes; they share the same keys."""
    home = tmp_path / "home"
    settings = make_settings(home, database_url or f"sqlite:///{home / 'shared.db'}")
    first, second = LiveServer(settings).start(), LiveServer(settings).start()
    first.key()
    second._keys = first._keys
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def manage(live: LiveServer, method: str, path: str, **kwargs):
    response = live.http.request(method, f"/manage/v1{path}", headers=live.auth(), **kwargs)
    assert response.status_code < 300, response.text
    return response


def test_publish_and_delete_show_at_the_next_call(server):
    app_id = server.app(instructions="Answer as v1.")
    prompt = {"input": {"prompt": "hi"}}
    assert instructions_used(server.call(app_id, prompt)) == "Answer as v1."

    manage(server, "PATCH", f"/apps/{app_id}", json={"instructions": "Answer as v2."})
    assert instructions_used(server.call(app_id, prompt)) == "Answer as v1.", "drafts are not called"

    manage(server, "POST", f"/apps/{app_id}/publish")
    assert instructions_used(server.call(app_id, prompt)) == "Answer as v2."

    manage(server, "DELETE", f"/apps/{app_id}")
    response = server.call(app_id, prompt)
    assert response.status_code == 404
    assert response.json()["code"] == "AppNotFound"


def test_changes_made_by_another_process_show_at_the_next_call(two_servers):
    first, second = two_servers
    app_id = first.app(instructions="Answer as v1.")
    prompt = {"input": {"prompt": "hi"}}
    assert instructions_used(first.call(app_id, prompt)) == "Answer as v1."

    manage(second, "PATCH", f"/apps/{app_id}", json={"instructions": "Answer as v2."})
    manage(second, "POST", f"/apps/{app_id}/publish")
    assert instructions_used(first.call(app_id, prompt)) == "Answer as v2."
    assert instructions_used(second.call(app_id, prompt)) == "Answer as v2."

    manage(second, "DELETE", f"/apps/{app_id}")
    response = first.call(app_id, prompt)
    assert response.status_code == 404
    assert response.json()["code"] == "AppNotFound"


def test_a_revoked_key_is_refused_at_once_by_every_process(two_servers):
    first, second = two_servers
    app_id = first.app()
    prompt = {"input": {"prompt": "hi"}}
    assert first.call(app_id, prompt).status_code == 200
    assert second.call(app_id, prompt).status_code == 200
    assert manage(first, "GET", "/plugins").status_code == 200

    keys = first.http.get(
        "/manage/v1/workspaces/ws1/keys", headers={"Authorization": f"Bearer {first.admin_token}"}
    ).json()["keys"]
    revoked = second.http.delete(
        f"/manage/v1/keys/{keys[0]['key_id']}",
        headers={"Authorization": f"Bearer {second.admin_token}"},
    )
    assert revoked.status_code == 204

    for live in (first, second):
        response = live.call(app_id, prompt)
        assert response.status_code == 401
        assert response.json()["code"] == "InvalidApiKey"
    assert first.http.get("/manage/v1/plugins", headers=first.auth()).status_code == 401
