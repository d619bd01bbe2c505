"""Long-term memory and plugins in real calls, through the dashscope SDK."""

from __future__ import annotations

import json
import time

import dashscope
import pytest
from dashscope import Application

from openbailian.providers.base import ModelChunk
from tests.support import LiveServer, make_settings
from tests.tools.conftest import tool_server  # noqa: F401  (fixture)


class ScriptedExtractor:
    """A model that answers every extraction request with one fixed fact."""

    model_id, context_length = "extractor", 4096

    async def count_tokens(self, messages):
        return 10

    async def stream(self, messages, options):
        yield ModelChunk(text='```json\n[{"subject": "饮食偏好", "fact": "用户饮食偏好：面食"}]\n```')
        yield ModelChunk(finish_reason="stop", input_tokens=10, output_tokens=10)

    async def aclose(self):
        pass


@pytest.fixture
def memory_server(tmp_path, database_url, monkeypatch):
    settings = make_settings(
        tmp_path / "home", database_url, memory_model="extractor",
        models={"extractor": {"provider": "echo"}},
    )
    live = LiveServer(settings).start()
    live.runtime.models.register("extractor", ScriptedExtractor())
    monkeypatch.setattr(dashscope, "base_http_api_url", live.base_http_api_url)
    yield live
    live.stop()


def nodes(server, memory_id: str, workspace: str = "ws1") -> list[dict]:
    response = server.http.get(f"/manage/v1/memories/{memory_id}/nodes", headers=server.auth(workspace))
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_seed_memory_flow_saves_then_recalls_in_a_new_session(memory_server):
    server = memory_server
    app_id = server.app(memory_enabled=True)
    memory_id = server.http.post("/manage/v1/memories", json={"description": "张三"}, headers=server.auth()).json()["memory_id"]

    saved = Application.call(api_key=server.key(), app_id=app_id, prompt="用户饮食偏好：面食", memory_id=memory_id)
    assert saved.status_code == 200
    deadline = time.monotonic() + 30
    while not nodes(server, memory_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [n["content"] for n in nodes(server, memory_id)] == ["用户饮食偏好：面食"]

    recalled = Application.call(api_key=server.key(), app_id=app_id, prompt="美食推荐", memory_id=memory_id)
    assert recalled.status_code == 200
    assert recalled.output.session_id != saved.output.session_id
    system = json.loads(recalled.output.text)["messages"][0]
    assert system["role"] == "system"
    assert "<user_memory>" in system["content"] and "用户饮食偏好：面食" in system["content"]

    # The same fact said again is not piled up.
    Application.call(api_key=server.key(), app_id=app_id, prompt="我还是喜欢面食", memory_id=memory_id)
    server.runtime.engine  # background extraction runs on the server's loop
    time.sleep(1.0)
    assert len(nodes(server, memory_id)) == 1


def test_memory_ids_are_checked_before_the_answer(memory_server):
    server = memory_server
    app_id = server.app(memory_enabled=True)
    unknown = Application.call(api_key=server.key(), app_id=app_id, prompt="hi", memory_id="m" * 32)
    assert (unknown.status_code, unknown.code) == (404, "MemoryNotFound")
    foreign = server.http.post("/manage/v1/memories", json={}, headers=server.auth("ws2")).json()["memory_id"]
    denied = Application.call(api_key=server.key(), app_id=app_id, prompt="hi", memory_id=foreign)
    assert (denied.status_code, denied.code) == (404, "MemoryNotFound")
    assert denied.message == unknown.message.replace("m" * 32, foreign)


@pytest.fixture
def plugin_server(tmp_path, database_url, tool_server, monkeypatch):  # noqa: F811
    settings = make_settings(tmp_path / "home", database_url, outbound_allow=f"127.0.0.1:{tool_server.port}")
    live = LiveServer(settings).start()
    monkeypatch.setattr(dashscope, "base_http_api_url", live.base_http_api_url)
    yield live
    live.stop()


def test_plugin_call_passes_params_and_user_token_without_showing_them(plugin_server, tool_server):  # noqa: F811
    server = plugin_server
    spec = {
        "name": "get_weather", "title": "天气查询", "description": "查询城市天气",
        "method": "GET", "url": f"{tool_server.url}/weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "passthrough": ["tenant"],
        "auth": {"type": "user_token", "header": "Authorization"},
    }
    tool_id = server.http.post("/manage/v1/plugins", json=spec, headers=server.auth()).json()["tool_id"]
    app_id = server.app(plugin_ids=[tool_id])
    responses = list(Application.call(
        api_key=server.key(), app_id=app_id, prompt='#call get_weather {"city": "杭州"}',
        stream=True, incremental_output=True, has_thoughts=True,
        biz_params={
            "user_defined_params": {tool_id: {"tenant": "acme"}},
            "user_defined_tokens": {tool_id: {"user_token": "sk-user-secret"}},
        },
    ))
    assert all(r.status_code == 200 for r in responses)
    [request] = tool_server.requests
    assert request["query"] == {"city": "杭州", "tenant": "acme"}
    assert request["headers"]["authorization"] == "Bearer sk-user-secret"

    thoughts = [t for r in responses for t in (r.output.thoughts or [])]
    [api] = [t for t in thoughts if t.action_type == "api"]
    assert api.action == "get_weather" and "晴" in api.observation
    answer = "".join(r.output.text for r in responses if r.output.text)
    messages = json.loads(answer)["messages"]
    assert any(m["role"] == "tool" and "晴" in m["content"] for m in messages)
    everything = json.dumps([str(r) for r in responses], ensure_ascii=False)
    assert "sk-user-secret" not in everything and "acme" not in answer


def test_plugins_of_another_workspace_cannot_be_linked(plugin_server, tool_server):  # noqa: F811
    server = plugin_server
    spec = {"name": "w", "description": "d", "method": "GET", "url": f"{tool_server.url}/weather",
            "parameters": {"type": "object", "properties": {}}}
    foreign = server.http.post("/manage/v1/plugins", json=spec, headers=server.auth("ws2")).json()["tool_id"]
    response = server.http.post("/manage/v1/apps", json={"name": "a", "model": "echo", "plugin_ids": [foreign]},
                                headers=server.auth("ws1"))
    assert response.status_code == 404 and response.json()["code"] == "PluginNotFound", response.text  # as if missing
