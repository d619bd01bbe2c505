"""The product's default path: apps on the bundled local model, through the SDK."""

from __future__ import annotations

import dashscope
import pytest
from dashscope import Application

from tests.support import LOCAL_MODEL_BUDGET

pytestmark = pytest.mark.slow


@pytest.fixture
def sdk(local_server, monkeypatch):
    monkeypatch.setattr(dashscope, "base_http_api_url", local_server.base_http_api_url)
    return local_server


def test_quick_start_on_the_local_model_answers_in_chinese(sdk):
    app_id = sdk.app(model="local", instructions="You are a helpful assistant.")
    response = Application.call(request_timeout=LOCAL_MODEL_BUDGET, api_key=sdk.key(), app_id=app_id, prompt="你是谁？", seed=1, temperature=0.0)
    assert response.status_code == 200
    text = response.output.text
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)
    [usage] = response.usage.models
    assert usage.model_id == "qwen2.5-coder-0.5b-instruct"
    assert usage.input_tokens > 10 and usage.output_tokens > 0


def test_english_multi_turn_on_the_local_model_remembers(sdk):
    app_id = sdk.app(model="local", instructions="You are a helpful assistant. Answer briefly.")
    first = Application.call(
        request_timeout=LOCAL_MODEL_BUDGET, api_key=sdk.key(), app_id=app_id, prompt="My name is Alice. Please remember it.", temperature=0.0, seed=1
    )
    second = Application.call(
        request_timeout=LOCAL_MODEL_BUDGET, api_key=sdk.key(), app_id=app_id, prompt="What is my name?", session_id=first.output.session_id,
        temperature=0.0, seed=1,
    )
    assert "alice" in second.output.text.lower()


def test_streaming_on_the_local_model_sends_many_increments(sdk):
    app_id = sdk.app(model="local")
    responses = list(Application.call(
        request_timeout=LOCAL_MODEL_BUDGET, api_key=sdk.key(), app_id=app_id, prompt="List three colours.", stream=True, incremental_output=True,
        temperature=0.0, seed=1,
    ))
    pieces = [r.output.text for r in responses if r.output.text]
    assert len(pieces) >= 5
    assert responses[-1].output.finish_reason == "stop"
    assert responses[-1].usage.models[0].output_tokens >= len(pieces) - 1


def test_prompt_variables_steer_the_local_model(sdk):
    app_id = sdk.app(
        model="local",
        instructions="You are a travel guide for {{city}}. Always mention the city name {{city}} in your answer.",
        variables=[{"name": "city"}],
    )
    response = Application.call(
        request_timeout=LOCAL_MODEL_BUDGET, api_key=sdk.key(), app_id=app_id, prompt="Recommend one dish.", temperature=0.0, seed=1,
        biz_params={"user_prompt_params": {"city": "Beijing"}},
    )
    assert "beijing" in response.output.text.lower()


def test_a_plugin_call_on_the_local_model_never_ends_empty(sdk):
    app_id = sdk.app(model="local", plugin_ids=["builtin:calculator"], parameters={"max_tokens": 128})
    response = Application.call(
        request_timeout=LOCAL_MODEL_BUDGET, api_key=sdk.key(), app_id=app_id, prompt="用计算器算 123*45 等于多少？",
        has_thoughts=True, temperature=0.0, seed=1,
    )
    assert response.status_code == 200, response.message
    observations = [t.observation for t in response.output.thoughts or [] if t.action_type == "api"]
    assert "5535" in observations, response.output.thoughts
    assert response.output.text.strip(), response.output.thoughts
