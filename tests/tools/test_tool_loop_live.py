"""A model that never stops calling tools still gives an answer, through the SDK.

The model is a scripted OpenAI-compatible server on a real socket that calls the
built-in calculator on every request. Offered no tools (after the round cap) it
either answers from the text it is shown, or, like the bundled 0.5B model, keeps
calling; both end in a non-empty answer, and the cap shows in the thoughts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dashscope
import pytest
from dashscope import Application
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support import LiveServer, make_settings, serve_in_thread

ROUNDS = 5  # the engine's default cap


class LoopingModel:
    """Calls calculator(6*7) whenever tools are offered; ``stubborn``: also when they are not."""

    def __init__(self) -> None:
        self.stubborn = False
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._reply, methods=["POST"])])

    async def _reply(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        if body.get("tools") or self.stubborn:
            call = {"id": f"c{len(self.requests)}", "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            # Answers from what it was told: the last message, as plain text.
            message = {"role": "assistant", "content": "根据插件结果：" + body["messages"][-1]["content"][-40:]}
            finish = "stop"
        return JSONResponse({
            "id": "x", "object": "chat.completion", "model": "looper",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
        })


@pytest.fixture(scope="module")
def looping_model() -> Iterator[LoopingModel]:
    model = LoopingModel()
    with serve_in_thread(model.app) as url:
        model.url = f"{url}/v1"  # type: ignore[attr-defined]
        yield model


@pytest.fixture
def server(tmp_path, database_url, looping_model, monkeypatch) -> Iterator[LiveServer]:
    models = {"looper": {"provider": "openai", "base_url": looping_model.url, "model": "looper"}}
    live = LiveServer(make_settings(tmp_path / "home", database_url, models=models)).start()
    monkeypatch.setattr(dashscope, "base_http_api_url", live.base_http_api_url)
    looping_model.requests.clear()
    yield live
    live.stop()


def ask(server: LiveServer, stream: bool) -> tuple[str, list[Any]]:
    app_id = server.app(model="looper", plugin_ids=["builtin:calculator"])
    response = Application.call(
        api_key=server.key(), app_id=app_id, prompt="6乘以7等于多少？", has_thoughts=True,
        stream=stream, incremental_output=stream,
    )
    responses = list(response) if stream else [response]
    assert all(r.status_code == 200 for r in responses), responses[-1].message
    text = "".join(r.output.text or "" for r in responses)
    thoughts = [t for r in responses for t in (r.output.thoughts or [])]
    return text, thoughts


def test_the_round_cap_ends_in_an_answer_from_the_tool_results(server, looping_model):
    text, thoughts = ask(server, stream=False)
    assert "42" in text, text
    assert [t.observation for t in thoughts if t.action_type == "api"] == ["42"] * ROUNDS
    [cap] = [t for t in thoughts if t.action_type == "response"]
    assert f"上限（{ROUNDS} 轮）" in cap.thought
    last = looping_model.requests[-1]
    assert len(looping_model.requests) == ROUNDS + 1 and not last.get("tools")
    # The last call shows the results as text, not as tool messages the model would answer with a call.
    assert all(m["role"] in ("system", "user") for m in last["messages"]), last["messages"]
    assert "42" in last["messages"][-1]["content"]


def test_a_model_that_calls_even_without_tools_still_answers(server, looping_model):
    looping_model.stubborn = True
    try:
        text, thoughts = ask(server, stream=True)
    finally:
        looping_model.stubborn = False
    assert text.strip() and "42" in text, text
    assert any(t.action_type == "response" for t in thoughts)
    assert json.dumps(looping_model.requests[-1]).count('"tools"') == 0
