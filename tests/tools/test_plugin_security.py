"""Plugins at rest and at registration: service tokens sealed with the server key (and the
0009 migration seals old plaintext ones); URLs held to the outbound rules when registered."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from openbailian.crypto import SecretBox
from openbailian.storage.db import alembic_config, migrate, sync_url
from tests.support import LiveServer, make_settings

TOKEN = "svc-TOKEN-0123456789"
SPEC = {
    "name": "get_weather", "description": "查询天气", "method": "GET",
    "parameters": {"type": "object", "properties": {}},
    "auth": {"type": "service_token", "token": TOKEN},
}


def stored_specs(url: str) -> list[str]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            # as JSON text on both backends (psycopg would hand back a dict for a json column)
            return [row[0] for row in connection.execute(text("SELECT CAST(spec AS TEXT) FROM plugins"))]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.2.3/x", "http://192.168.0.1/{path}",
        "http://169.254.169.254/latest/meta-data", "http://100.100.100.200/x", "http://[::1]/x",
        "http://0x7f.1/x", "http://2130706433/x", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x",
    ],
)
def test_internal_urls_are_refused_at_registration_and_update(server, url):
    http, auth = server.http, server.auth()
    created = http.post("/manage/v1/plugins", json={**SPEC, "url": url}, headers=auth)
    assert created.status_code == 400 and created.json()["code"] == "InvalidParameter", created.text
    assert "url" in created.json()["message"] and "OPENBAILIAN_OUTBOUND_ALLOW" in created.json()["message"]
    ok = http.post("/manage/v1/plugins", json={**SPEC, "url": "https://tool.invalid/x"}, headers=auth)
    assert ok.status_code == 201, ok.text
    moved = http.patch(f"/manage/v1/plugins/{ok.json()['tool_id']}", json={"url": url}, headers=auth)
    assert moved.status_code == 400, moved.text
    assert http.get(f"/manage/v1/plugins/{ok.json()['tool_id']}", headers=auth).json()["spec"]["url"] == "https://tool.invalid/x"


@pytest.fixture
def allowed_server(tmp_path, database_url, tool_server):
    settings = make_settings(tmp_path / "home", database_url, outbound_allow=f"127.0.0.1:{tool_server.port}")
    live = LiveServer(settings).start()
    yield live
    live.stop()


def test_service_tokens_are_sealed_at_rest_and_still_sent(allowed_server, tool_server):
    server = allowed_server
    http, auth = server.http, server.auth()
    created = http.post("/manage/v1/plugins", json={**SPEC, "url": f"{tool_server.url}/echo-auth"}, headers=auth)
    assert created.status_code == 201, created.text
    tool_id = created.json()["tool_id"]
    specs = stored_specs(server.settings.resolved_database_url)
    assert len(specs) == 1 and TOKEN not in specs[0] and "fernet:" in specs[0]
    # An update that does not give the token keeps it (still sealed), and calls still send it.
    http.patch(f"/manage/v1/plugins/{tool_id}", json={"description": "新"}, headers=auth).raise_for_status()
    assert TOKEN not in stored_specs(server.settings.resolved_database_url)[0]
    tested = http.post(f"/manage/v1/plugins/{tool_id}/test", json={"arguments": {}}, headers=auth)
    assert tool_server.requests[-1]["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in tested.text  # the observation redacts it


def test_migration_0009_seals_plaintext_tokens(settings):
    url = settings.resolved_database_url
    from alembic import command

    config = alembic_config(url)
    settings.home.mkdir(parents=True, exist_ok=True)
    command.upgrade(config, "0004")  # a database from before sealing
    engine = create_engine(sync_url(url))
    spec = '{"name": "p", "auth": {"type": "service_token", "token": "%s"}}' % TOKEN
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO workspaces (id, name, created_at) VALUES ('ws1', 'ws1', CURRENT_TIMESTAMP)"))
        connection.execute(
            text("INSERT INTO plugins (id, workspace_id, name, spec, created_at, updated_at) "
                 "VALUES ('p1', 'ws1', 'p', :spec, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
            {"spec": spec},
        )
    engine.dispose()
    with pytest.raises(RuntimeError, match="server key"):
        migrate(url)  # without the key, plaintext tokens are not silently left behind
    box = SecretBox("a test server key")
    migrate(url, box)
    [stored] = stored_specs(url)
    assert TOKEN not in stored
    import json

    assert box.open(json.loads(stored)["auth"]["token"]) == TOKEN
