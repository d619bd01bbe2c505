"""Memories and nodes through the management HTTP API and the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from openbailian.cli import app as cli_app


def test_memory_and_nodes_lifecycle(server):
    http, auth = server.http, server.auth("ws1")
    created = http.post("/manage/v1/memories", json={"description": "张三"}, headers=auth)
    assert created.status_code == 201
    memory_id = created.json()["memoryId"]
    assert created.json()["memory_id"] == memory_id

    node = http.post(f"/manage/v1/memories/{memory_id}/nodes", json={"content": "用户饮食偏好：面食"}, headers=auth)
    assert node.status_code == 201 and node.json()["subject"] == "饮食偏好"
    node_id = node.json()["id"]
    updated = http.patch(
        f"/manage/v1/memories/{memory_id}/nodes/{node_id}", json={"content": "用户饮食偏好：米饭"}, headers=auth
    )
    assert updated.status_code == 200 and updated.json()["content"] == "用户饮食偏好：米饭"
    listed = http.get(f"/manage/v1/memories/{memory_id}/nodes", headers=auth).json()
    assert [i["content"] for i in listed["items"]] == ["用户饮食偏好：米饭"]
    memories = http.get("/manage/v1/memories", headers=auth).json()["memories"]
    assert [(m["memory_id"], m["items"]) for m in memories] == [(memory_id, 1)]

    assert http.delete(f"/manage/v1/memories/{memory_id}/nodes/{node_id}", headers=auth).status_code == 204
    assert http.get(f"/manage/v1/memories/{memory_id}/nodes", headers=auth).json()["items"] == []
    assert http.delete(f"/manage/v1/memories/{memory_id}", headers=auth).status_code == 204
    gone = http.get(f"/manage/v1/memories/{memory_id}", headers=auth)
    assert gone.status_code == 404 and gone.json()["code"] == "MemoryNotFound"


def test_other_workspaces_cannot_see_or_touch_a_memory(server):
    http = server.http
    memory_id = http.post("/manage/v1/memories", json={}, headers=server.auth("ws1")).json()["memory_id"]
    http.post(f"/manage/v1/memories/{memory_id}/nodes", json={"content": "秘密"}, headers=server.auth("ws1"))
    other = server.auth("ws2")
    for method, path, body in [
        ("GET", f"/manage/v1/memories/{memory_id}/nodes", None),
        ("POST", f"/manage/v1/memories/{memory_id}/nodes", {"content": "x"}),
        ("DELETE", f"/manage/v1/memories/{memory_id}", None),
    ]:
        response = http.request(method, path, json=body, headers=other)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "MemoryNotFound" and response.json()["request_id"]
    assert http.get("/manage/v1/memories", headers=other).json()["memories"] == []
    items = http.get(f"/manage/v1/memories/{memory_id}/nodes", headers=server.auth("ws1")).json()["items"]
    assert [i["content"] for i in items] == ["秘密"]


def test_bad_inputs_are_clear_errors_and_store_nothing(server):
    http, auth = server.http, server.auth("ws1")
    memory_id = http.post("/manage/v1/memories", json={}, headers=auth).json()["memory_id"]
    nodes = f"/manage/v1/memories/{memory_id}/nodes"
    for body in [{}, {"content": ""}, {"content": 5}, {"content": "x" * 501}, {"content": "x", "extra": 1}]:
        response = http.post(nodes, json=body, headers=auth)
        assert response.status_code == 400, body
        assert response.json()["code"] == "InvalidParameter"
    assert http.post("/manage/v1/memories", json={"description": "x" * 1001}, headers=auth).status_code == 400
    assert http.get(nodes, headers=auth).json()["items"] == []
    unknown = http.patch(f"{nodes}/nope", json={"content": "x"}, headers=auth)
    assert unknown.status_code == 404
    assert http.get("/manage/v1/memories/nope/nodes", headers=auth).json()["code"] == "MemoryNotFound"
    assert http.get("/manage/v1/memories").status_code == 401


def test_cli_create_items_add_update_delete(settings, monkeypatch):
    monkeypatch.setenv("OPENBAILIAN_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("OPENBAILIAN_DATABASE_URL", settings.database_url)
    runner = CliRunner()

    def run(*args: str) -> dict:
        result = runner.invoke(cli_app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    memory_id = run("memory", "create", "--workspace", "w9")["memory_id"]
    item = run("memory", "add", memory_id, "用户住在北京")
    run("memory", "update", memory_id, item["id"], "用户住在上海")
    assert [i["content"] for i in run("memory", "items", memory_id)["items"]] == ["用户住在上海"]
    run("memory", "forget", memory_id, item["id"])
    assert run("memory", "items", memory_id)["items"] == []
    assert [m["memory_id"] for m in run("memory", "list", "--workspace", "w9")["memories"]] == [memory_id]
    wrong = runner.invoke(cli_app, ["memory", "items", memory_id, "--workspace", "other", "--json"])
    assert wrong.exit_code == 1
    run("memory", "delete", memory_id)
    assert runner.invoke(cli_app, ["memory", "items", memory_id, "--json"]).exit_code == 1
