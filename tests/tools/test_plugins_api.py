"""Plugins through the management HTTP API and the CLI."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from openbailian.cli import app as cli_app

SPEC = {
    "name": "get_weather",
    "title": "天气查询",
    "description": "查询天气",
    "method": "GET",
    "url": "http://127.0.0.1:9/weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "auth": {"type": "service_token", "token": "svc-secret-token"},
}


def test_plugin_lifecycle_and_test_call(server, tool_server):
    http, auth = server.http, server.auth("ws1")
    # The server's allow-list is empty: a loopback URL is refused at registration already.
    refused = http.post("/manage/v1/plugins", json={**SPEC, "url": f"{tool_server.url}/weather"}, headers=auth)
    assert refused.status_code == 400 and "loopback" in refused.json()["message"], refused.text
    # A host that does not resolve now is accepted; the call-time check reports it, as an observation.
    created = http.post("/manage/v1/plugins", json={**SPEC, "url": "https://tool.invalid/weather"}, headers=auth)
    assert created.status_code == 201, created.text
    tool_id = created.json()["tool_id"]
    assert created.json()["spec"]["auth"]["token"] == "***"  # never shown back
    tested = http.post(f"/manage/v1/plugins/{tool_id}/test", json={"arguments": {"city": "北京"}}, headers=auth)
    assert tested.status_code == 200 and "resolve" in tested.json()["observation"], tested.text
    assert tool_server.requests == []

    updated = http.patch(f"/manage/v1/plugins/{tool_id}", json={"description": "新描述", "auth": {"type": "service_token"}}, headers=auth)
    assert updated.status_code == 200 and updated.json()["spec"]["description"] == "新描述"
    listed = http.get("/manage/v1/plugins", headers=auth).json()["plugins"]
    assert [p["tool_id"] for p in listed] == [tool_id]
    assert http.get(f"/manage/v1/plugins/{tool_id}", headers=server.auth("ws2")).status_code == 404
    assert http.delete(f"/manage/v1/plugins/{tool_id}", headers=server.auth("ws2")).status_code == 404
    assert http.delete(f"/manage/v1/plugins/{tool_id}", headers=auth).status_code == 204
    missing = http.get(f"/manage/v1/plugins/{tool_id}", headers=auth)
    assert missing.status_code == 404 and missing.json()["code"] == "PluginNotFound"


def test_invalid_specs_are_refused(server):
    http, auth = server.http, server.auth("ws1")
    for bad in [
        {**SPEC, "name": "has space"},
        {**SPEC, "url": "ftp://example.com/x"},
        {**SPEC, "method": "TRACE"},
        {**SPEC, "auth": {"type": "service_token"}},
        {**SPEC, "parameters": {"type": "string"}},
        {**SPEC, "unknown": 1},
        {k: v for k, v in SPEC.items() if k != "description"},
    ]:
        response = http.post("/manage/v1/plugins", json=bad, headers=auth)
        assert response.status_code == 400, bad
        assert response.json()["code"] == "InvalidParameter"
    assert http.get("/manage/v1/plugins", headers=auth).json()["plugins"] == []


def test_cli_create_from_yaml_and_test(settings, monkeypatch, tool_server, tmp_path):
    monkeypatch.setenv("OPENBAILIAN_HOME", str(settings.home))
    monkeypatch.setenv("OPENBAILIAN_OUTBOUND_ALLOW", f"127.0.0.1:{tool_server.port}")
    if settings.database_url:
        monkeypatch.setenv("OPENBAILIAN_DATABASE_URL", settings.database_url)
    file = tmp_path / "plugin.yaml"
    file.write_text(yaml.safe_dump({**SPEC, "url": f"{tool_server.url}/weather"}, allow_unicode=True), encoding="utf-8")
    runner = CliRunner()

    def run(*args: str) -> dict:
        result = runner.invoke(cli_app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    tool_id = run("plugins", "create", "--file", str(file), "--workspace", "w1")["tool_id"]
    observation = run("plugins", "test", tool_id, "--args", '{"city": "北京"}')["observation"]
    assert "晴" in observation
    assert tool_server.requests[0]["headers"]["authorization"] == "Bearer svc-secret-token"
    assert run("plugins", "show", tool_id)["spec"]["auth"]["token"] == "***"
    assert [p["tool_id"] for p in run("plugins", "list", "--workspace", "w1")["plugins"]] == [tool_id]
    run("plugins", "delete", tool_id)
    assert runner.invoke(cli_app, ["plugins", "show", tool_id, "--json"]).exit_code == 1
