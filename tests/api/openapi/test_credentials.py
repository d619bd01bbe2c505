"""The AccessKey pair of a key, from the CLI: shown once, sealed at rest, usable by the SDK
against a running server, and revoked with the key."""

from __future__ import annotations

import json

import pytest
from alibabacloud_bailian20231229 import models
from alibabacloud_tea_openapi.exceptions import ClientException
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from openbailian.cli import app as cli
from openbailian.storage.db import sync_url
from tests.api.openapi.conftest import sdk_client
from tests.support import LiveServer


@pytest.fixture
def run(server: LiveServer, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The CLI on the server's home and database (a second process on the same data)."""
    monkeypatch.setenv("OPENBAILIAN_HOME", str(server.settings.home))
    if server.settings.database_url:
        monkeypatch.setenv("OPENBAILIAN_DATABASE_URL", server.settings.database_url)

    def invoke(*args: str) -> dict:
        result = CliRunner().invoke(cli, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return invoke


def test_the_cli_pair_signs_sdk_calls_and_is_revoked_with_the_key(server: LiveServer, run) -> None:  # type: ignore[no-untyped-def]
    created = run("keys", "create", "--workspace", "team-a")
    assert created["api_key"].startswith("sk-") and created["access_key_id"] and created["access_key_secret"]
    client = sdk_client(
        server, access_key_id=created["access_key_id"], access_key_secret=created["access_key_secret"]
    )
    memory_id = client.create_memory("team-a", models.CreateMemoryRequest(description="x")).body.memory_id
    assert memory_id

    listed = json.dumps(run("keys", "list"))
    assert created["access_key_secret"] not in listed and created["api_key"] not in listed
    engine = create_engine(sync_url(server.settings.resolved_database_url))
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT access_key_secret FROM api_keys WHERE access_key_id = :id"),
                {"id": created["access_key_id"]},
            ).scalar_one()
    finally:
        engine.dispose()
    assert stored.startswith("fernet:") and created["access_key_secret"] not in stored

    run("keys", "revoke", created["key_id"])
    for revoked in (client, sdk_client(server, bearer_token=created["api_key"])):
        with pytest.raises(ClientException) as caught:
            revoked.list_memories("team-a", models.ListMemoriesRequest())
        assert (caught.value.status_code, caught.value.code) == (401, "InvalidApiKey")
