"""Bad input: each answered in the DashScope shape with the right status, nothing stored changed."""

from __future__ import annotations

import json

import httpx
import pytest

from openbailian.providers.base import ModelChunk, ModelUnavailable
from tests.support import LiveServer, make_settings


def assert_error(response: httpx.Response, status: int, code: str, words: str = "") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "request_id"}
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert words.lower() in body["message"].lower()
    return body


def post(server, app_id: str, content: bytes | str, headers: dict | None = None) -> httpx.Response:
    return server.http.post(
        f"/api/v1/apps/{app_id}/completion",
        content=content,
        headers={**server.auth(), "Content-Type": "application/json", **(headers or {})},
    )


def test_missing_key(server):
    app_id = server.app()
    response = server.http.post(f"/api/v1/apps/{app_id}/completion", json={"input": {"prompt": "x"}})
    assert_error(response, 401, "InvalidApiKey", "no api-key")


def test_wrong_and_revoked_keys(server):
    app_id = server.app()
    wrong = server.http.post(
        f"/api/v1/apps/{app_id}/completion", json={"input": {"prompt": "x"}},
        headers={"Authorization": "Bearer sk-0000"},
    )
    assert_error(wrong, 401, "InvalidApiKey", "invalid api-key")


def test_unknown_app(server):
    assert_error(server.call("0" * 32, {"input": {"prompt": "x"}}), 404, "AppNotFound", "0" * 32)


def test_app_of_another_workspace(server):
    app_id = server.app(workspace="ws1")
    response = server.call(app_id, {"input": {"prompt": "x"}}, workspace="ws2")
    body = assert_error(response, 404, "AppNotFound")
    missing = assert_error(server.call("0" * 32, {"input": {"prompt": "x"}}, workspace="ws2"), 404, "AppNotFound")
    assert body["message"] == missing["message"].replace("0" * 32, app_id)


def test_workspace_header_of_another_workspace(server):
    app_id = server.app(workspace="ws1")
    response = server.http.post(
        f"/api/v1/apps/{app_id}/completion", json={"input": {"prompt": "x"}},
        headers={**server.auth("ws1"), "X-DashScope-WorkSpace": "ws2"},
    )
    assert_error(response, 403, "Workspace.AccessDenied", "ws2")


@pytest.mark.parametrize(("body", "words"), [
    ({"input": {}}, "input.prompt or input.messages is required"),
    ({"parameters": {}}, "input"),
    ({"input": {"prompt": 42}}, "input.prompt"),
    ({"input": {"prompt": "x"}, "parameters": {"temperature": "0.5"}}, "parameters.temperature"),
    ({"input": {"prompt": "x"}, "parameters": {"temperature": 3}}, "parameters.temperature"),
    ({"input": {"prompt": "x"}, "parameters": {"incremental_output": "yes"}}, "incremental_output"),
    ({"input": {"prompt": "x"}, "parameters": {"max_tokens": 0}}, "max_tokens"),
    ({"input": {"messages": "hello"}}, "input.messages"),
    ({"input": {"messages": []}}, "must not be empty"),
    ({"input": {"messages": [{"role": "robot", "content": "x"}]}}, "role"),
    ({"input": {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}}, "last message"),
    ({"input": {"prompt": "x", "biz_params": {"user_prompt_params": "city"}}}, "user_prompt_params"),
    ({"input": {"prompt": "x", "image_list": ["http://example.com/a.png"]}}, "image_list"),
    ({"input": {"prompt": "x", "session_id": "s" * 200}}, "session_id"),
    ({"input": {"prompt": "x"}, "parameters": {"rag_options": {"pipeline_ids": "kb1"}}}, "rag_options.pipeline_ids"),
    ({"input": {"prompt": "x"}, "parameters": {"rag_options": {"unknown": 1}}}, "rag_options.unknown"),
    ([1, 2], "json object"),
])
def test_malformed_bodies_are_invalid_parameter(server, body, words):
    app_id = server.app()
    assert_error(server.call(app_id, body), 400, "InvalidParameter", words)


def test_malformed_json(server):
    app_id = server.app()
    assert_error(post(server, app_id, b'{"input": {"prompt": "x"'), 400, "InvalidParameter", "not valid json")
    assert_error(post(server, app_id, b"\xff\xfe"), 400, "InvalidParameter", "not valid json")


def test_missing_required_prompt_variable(server):
    app_id = server.app(instructions="Weather in {{city}} on {{day}}", variables=[{"name": "day", "default": "today"}])
    body = assert_error(server.call(app_id, {"input": {"prompt": "x"}}), 400, "InvalidParameter", "'city'")
    assert "user_prompt_params" in body["message"]


def test_a_misspelled_prompt_variable_is_named_with_the_declared_ones(server):
    app_id = server.app(instructions="请给出{{city}}的三种美食推荐", variables=[{"name": "city", "default": "北京"}])
    body = assert_error(
        server.call(app_id, {"input": {"prompt": "x", "biz_params": {"user_prompt_params": {"cty": "杭州"}}}}),
        400, "InvalidParameter", "'cty'",
    )
    assert "its variables: city" in body["message"] and "--var" in body["message"]
    plain = server.app(instructions="You help.")
    body = assert_error(
        server.call(plain, {"input": {"prompt": "x", "biz_params": {"user_prompt_params": {"city": "杭州"}}}}),
        400, "InvalidParameter", "declares no variables",
    )
    # The declared name still works, and nothing was stored by the refused calls.
    ok = server.call(app_id, {"input": {"prompt": "x", "biz_params": {"user_prompt_params": {"city": "杭州"}}}})
    assert ok.status_code == 200 and "杭州" in ok.json()["output"]["text"]


@pytest.fixture
def small_server(tmp_path, database_url):
    settings = make_settings(tmp_path / "home", database_url, max_body_bytes=2048, rate_limit_per_minute=3)
    live = LiveServer(settings).start()
    yield live
    live.stop()


def test_oversized_body(small_server):
    app_id = small_server.app()
    response = small_server.call(app_id, {"input": {"prompt": "x" * 5000}})
    assert_error(response, 413, "RequestTooLarge", "2048")


def test_oversized_body_without_content_length(small_server):
    app_id = small_server.app()

    def chunks():
        yield b'{"input": {"prompt": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}}'

    response = small_server.http.post(
        f"/api/v1/apps/{app_id}/completion", content=chunks(),
        headers={**small_server.auth(), "Content-Type": "application/json"},
    )
    assert_error(response, 413, "RequestTooLarge")


def test_rate_limit_per_key_with_retry_after(small_server):
    app_id = small_server.app()
    statuses = [small_server.call(app_id, {"input": {"prompt": "x"}}).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = small_server.call(app_id, {"input": {"prompt": "x"}})
    assert_error(limited, 429, "Throttling.RateQuota", "rate limit")
    assert int(limited.headers["retry-after"]) >= 1
    # Another key has its own budget.
    other_app = small_server.app(workspace="ws2")
    assert small_server.call(other_app, {"input": {"prompt": "x"}}, workspace="ws2").status_code == 200


def test_bad_requests_leave_the_stored_session_untouched(server):
    app_id = server.app(instructions="{{city}}", variables=[{"name": "city", "default": "北京"}])
    session_id = server.call(app_id, {"input": {"prompt": "first"}}).json()["output"]["session_id"]
    bad_bodies = [
        {"input": {"prompt": 1, "session_id": session_id}},
        {"input": {"prompt": "x", "session_id": session_id}, "parameters": {"top_p": 5}},
        {"input": {"prompt": "x", "session_id": session_id, "biz_params": {"user_prompt_params": {"city": ["a"]}}}},
        {"input": {"session_id": session_id}},
    ]
    for body in bad_bodies:
        assert server.call(app_id, body).status_code == 400
    final = server.call(app_id, {"input": {"prompt": "second", "session_id": session_id}})
    messages = json.loads(final.json()["output"]["text"])["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first", "second"]


class BrokenProvider:
    """Fails after a first piece, as a model server that dies mid-answer."""

    model_id, context_length = "broken", 4096

    def __init__(self, fail_at_start: bool) -> None:
        self._fail_at_start = fail_at_start

    async def count_tokens(self, messages):
        return 10

    async def stream(self, messages, options):
        if not self._fail_at_start:
            yield ModelChunk(text="partial ")
        raise ModelUnavailable("The model server at http://gpu:8000 is unreachable")

    async def aclose(self):
        pass


def test_model_down_is_503_for_json_calls(server):
    server.runtime.models.register("echo", BrokenProvider(fail_at_start=True))
    app_id = server.app()
    assert_error(server.call(app_id, {"input": {"prompt": "x"}}), 503, "ModelServiceUnavailable", "unreachable")


def test_model_failure_mid_stream_is_an_error_event(server):
    server.runtime.models.register("echo", BrokenProvider(fail_at_start=False))
    app_id = server.app()
    response = server.http.post(
        f"/api/v1/apps/{app_id}/completion", json={"input": {"prompt": "x"}, "parameters": {"incremental_output": True}},
        headers={**server.auth(), "X-DashScope-SSE": "enable"},
    )
    assert response.status_code == 200
    first, error = response.text.strip().split("\n\n")
    assert "partial" in first
    lines = error.split("\n")
    assert lines[:4] == ["id:2", "event:error", ":HTTP_STATUS/503", "status:503"]
    data = json.loads(lines[4].removeprefix("data:"))
    assert data["code"] == "ModelServiceUnavailable"
    assert data["request_id"] == response.headers["x-request-id"]


def test_sdk_reports_the_stream_error_status(server, monkeypatch):
    import dashscope
    from dashscope import Application

    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    server.runtime.models.register("echo", BrokenProvider(fail_at_start=True))
    app_id = server.app()
    responses = list(Application.call(api_key=server.key(), app_id=app_id, prompt="x", stream=True))
    assert responses[-1].status_code == 503
    assert responses[-1].code == "ModelServiceUnavailable"


def test_openai_backend_down_through_the_api(tmp_path, database_url):
    from tests.support import free_port

    settings = make_settings(
        tmp_path / "home", database_url,
        models={"remote": {"provider": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                           "model": "qwen-plus", "max_retries": 0, "timeout": 2}},
    )
    live = LiveServer(settings).start()
    try:
        app_id = live.app(model="remote")
        assert_error(live.call(app_id, {"input": {"prompt": "x"}}), 503, "ModelServiceUnavailable")
    finally:
        live.stop()


def test_unknown_model_in_an_app_is_refused_at_creation(server):
    response = server.http.post(
        "/manage/v1/apps", json={"name": "x", "model": "gpt-17"}, headers=server.auth()
    )
    assert_error(response, 400, "InvalidParameter.Model", "gpt-17")


def test_unknown_route_and_method_keep_the_error_shape(server):
    assert_error(server.http.get("/api/v1/nothing"), 404, "NotFound")
    response = server.http.get(f"/api/v1/apps/{server.app()}/completion", headers=server.auth())
    assert_error(response, 405, "MethodNotAllowed")
