"""The completion endpoint over raw HTTP: response shape, multi-turn, bad input."""

from __future__ import annotations

import json

import pytest

from tests.support import LiveServer, make_settings


def echoed(response) -> list[dict[str, str]]:
    return json.loads(response.json()["output"]["text"])["messages"]


def test_json_response_has_the_documented_shape(server):
    app_id = server.app(instructions="Be brief.")
    response = server.call(app_id, {"input": {"prompt": "你好"}, "parameters": {}})
    assert response.status_code == 200
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    output = body["output"]
    assert output["finish_reason"] == "stop"
    assert len(output["session_id"]) == 32
    assert output["thoughts"] is None and output["doc_references"] is None
    assert echoed(response) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "你好"},
    ]
    [usage] = body["usage"]["models"]
    assert usage["model_id"] == "echo"
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


def test_session_turns_accumulate_in_order(server):
    app_id = server.app()
    first = server.call(app_id, {"input": {"prompt": "one"}}).json()
    session_id = first["output"]["session_id"]
    server.call(app_id, {"input": {"prompt": "two", "session_id": session_id}})
    third = server.call(app_id, {"input": {"prompt": "three", "session_id": session_id}})
    assert third.json()["output"]["session_id"] == session_id
    messages = echoed(third)
    assert [m["content"] for m in messages if m["role"] == "user"] == ["one", "two", "three"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2 + ["user"]


def test_unknown_session_is_an_error_not_a_fresh_start(server):
    app_id = server.app()
    response = server.call(app_id, {"input": {"prompt": "hi", "session_id": "f" * 32}})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "SessionNotFound"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "f" * 32 in body["message"]


def test_a_session_of_another_app_is_not_found(server):
    first_app, other_app = server.app(), server.app(name="other")
    session_id = server.call(first_app, {"input": {"prompt": "hi"}}).json()["output"]["session_id"]
    response = server.call(other_app, {"input": {"prompt": "hi", "session_id": session_id}})
    assert response.status_code == 404
    assert response.json()["code"] == "SessionNotFound"


def test_messages_win_over_session_id_and_prompt_is_appended(server):
    app_id = server.app()
    session_id = server.call(app_id, {"input": {"prompt": "stored turn"}}).json()["output"]["session_id"]
    response = server.call(
        app_id,
        {
            "input": {
                "messages": [{"role": "user", "content": "你好"}],
                "prompt": "推荐一部电影",
                "session_id": session_id,
            }
        },
    )
    assert echoed(response) == [
        {"role": "user", "content": "你好"},
        {"role": "user", "content": "推荐一部电影"},
    ]


def test_history_is_trimmed_to_the_apps_turn_limit(server):
    app_id = server.app(max_history_turns=2)
    session_id = None
    for prompt in ["t1", "t2", "t3", "t4"]:
        body = {"input": {"prompt": prompt, **({"session_id": session_id} if session_id else {})}}
        response = server.call(app_id, body)
        session_id = response.json()["output"]["session_id"]
    users = [m["content"] for m in echoed(response) if m["role"] == "user"]
    assert users == ["t2", "t3", "t4"]


@pytest.fixture
def tiny_server(tmp_path, database_url):
    settings = make_settings(
        tmp_path / "home",
        database_url,
        models={"tiny": {"provider": "echo", "context_length": 200}},
        max_output_tokens=20,
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


def test_history_is_trimmed_to_the_model_context_by_tokens(tiny_server):
    app_id = tiny_server.app(model="tiny")
    session_id = None
    for prompt in ["alpha " * 40, "beta " * 40, "gamma " * 40]:
        body = {"input": {"prompt": prompt, "session_id": session_id}, "parameters": {"max_tokens": 40}}
        if session_id is None:
            del body["input"]["session_id"]
        response = tiny_server.call(app_id, body)
        assert response.status_code == 200, response.text
        session_id = response.json()["output"]["session_id"]
    # The echoed context is cut by max_tokens, so read where it starts: the
    # oldest turn that still fits.
    text = response.json()["output"]["text"]
    opening = '{"messages": [{"role": "user", "content": "'
    assert text.startswith(opening)
    assert text[len(opening):].startswith("beta"), "the oldest turn should be dropped"
    assert response.json()["output"]["finish_reason"] == "length"


def test_a_prompt_larger_than_the_context_is_refused(tiny_server):
    app_id = tiny_server.app(model="tiny")
    response = tiny_server.call(app_id, {"input": {"prompt": "word " * 500}})
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter"
    assert "too long" in response.json()["message"]


def test_max_tokens_cuts_the_answer_with_finish_reason_length(server):
    app_id = server.app()
    response = server.call(app_id, {"input": {"prompt": "hello there"}, "parameters": {"max_tokens": 3}})
    body = response.json()
    assert body["output"]["finish_reason"] == "length"
    assert body["usage"]["models"][0]["output_tokens"] == 3


def test_calls_use_the_published_version_not_the_draft(server):
    app_id = server.app(instructions="published rules")
    headers = server.auth()
    patched = server.http.patch(f"/manage/v1/apps/{app_id}", json={"instructions": "draft rules"}, headers=headers)
    assert patched.status_code == 200
    assert echoed(server.call(app_id, {"input": {"prompt": "x"}}))[0]["content"] == "published rules"
    server.http.post(f"/manage/v1/apps/{app_id}/publish", headers=headers)
    assert echoed(server.call(app_id, {"input": {"prompt": "x"}}))[0]["content"] == "draft rules"


def test_prompt_variables_use_defaults_and_call_values(server):
    app_id = server.app(
        instructions="城市：{{city}}；语气：{{tone}}",
        variables=[{"name": "city"}, {"name": "tone", "default": "友好"}],
    )
    response = server.call(
        app_id, {"input": {"prompt": "hi", "biz_params": {"user_prompt_params": {"city": "杭州"}}}}
    )
    assert echoed(response)[0]["content"] == "城市：杭州；语气：友好"


def test_sampling_parameters_reach_the_model(server):
    from openbailian.providers.base import GenerationOptions, ModelChunk

    seen: list[GenerationOptions] = []

    class Recorder:
        model_id, context_length = "recorder", 4096

        async def count_tokens(self, messages):
            return 10

        async def stream(self, messages, options):
            seen.append(options)
            yield ModelChunk(text="ok")
            yield ModelChunk(finish_reason="stop", input_tokens=1, output_tokens=1)

        async def aclose(self):
            pass

    server.runtime.models.register("echo", Recorder())
    app_id = server.app(parameters={"temperature": 0.3, "top_k": 5})
    params = {"temperature": 0.9, "top_p": 0.5, "seed": 7, "max_tokens": 12, "enable_thinking": True}
    assert server.call(app_id, {"input": {"prompt": "x"}, "parameters": params}).status_code == 200
    options = seen[-1]
    assert (options.temperature, options.top_p, options.top_k, options.seed, options.max_tokens) == (
        0.9, 0.5, 5, 7, 12,
    )
    assert options.enable_thinking is True
