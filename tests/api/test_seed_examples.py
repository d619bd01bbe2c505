"""The seed's Python examples, run verbatim through the official dashscope SDK.

Only the environment (DASHSCOPE_HTTP_BASE_URL, DASHSCOPE_API_KEY) and the app
id differ from the documentation. The app runs on the ``echo`` model, whose
answer is the JSON of the exact messages the model was given, so each test
checks the context the server built as well as what the example prints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, server, app_id: str, workspace: str = "ws1") -> str:
    source = (EXAMPLES / f"{name}.py").read_text(encoding="utf-8")
    assert "YOUR_APP_ID" in source
    env = {
        **os.environ,
        "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
        "DASHSCOPE_API_KEY": server.key(workspace),
    }
    result = subprocess.run(
        [sys.executable, "-c", source.replace("YOUR_APP_ID", app_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def echoed(text: str) -> list[dict[str, str]]:
    return json.loads(text)["messages"]


def test_quick_start_prints_the_answer(server):
    app_id = server.app(instructions="You are a helpful assistant.")
    out = run_example("quickstart", server, app_id)
    assert echoed(out.strip()) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "你是谁？"},
    ]


def test_multi_turn_by_session_id_loads_the_stored_turn(server):
    app_id = server.app()
    out = run_example("multi_turn_session", server, app_id)
    text, _, tail = out.partition("\n session_id=")
    session_id = tail.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", session_id)
    messages = echoed(text)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "你是谁？"
    assert echoed(messages[1]["content"]) == [{"role": "user", "content": "你是谁？"}]
    assert messages[2]["content"] == "你有什么技能?"


def test_multi_turn_by_messages_appends_the_prompt(server):
    app_id = server.app(instructions="App rules.")
    out = run_example("multi_turn_messages", server, app_id)
    text, _, _ = out.partition("\n session_id=")
    assert echoed(text) == [
        {"role": "system", "content": "App rules.\n\nYou are a helpful assistant."},
        {"role": "user", "content": "你是谁？"},
        {"role": "assistant", "content": "我是阿里云开发的大规模语言模型，我叫通义千问。"},
        {"role": "user", "content": "你有什么技能?"},
    ]


def test_streaming_incremental_prints_pieces_that_join_to_the_answer(server):
    app_id = server.app()
    out = run_example("streaming", server, app_id)
    pieces = [p for p in out.split("\n\n") if p]
    assert len(pieces) >= 3, "the answer should arrive in several events"
    assert echoed("".join(pieces)) == [{"role": "user", "content": "你是谁？"}]


def test_biz_params_fill_the_prompt_variable(server):
    app_id = server.app(
        instructions="请给出{{city}}的三种美食推荐，只显示美食名称，逗号隔开。",
        variables=[{"name": "city"}],
    )
    out = run_example("biz_params", server, app_id)
    messages = echoed(out.strip())
    assert messages[0] == {
        "role": "system",
        "content": "请给出北京的三种美食推荐，只显示美食名称，逗号隔开。",
    }
    assert messages[1] == {"role": "user", "content": "美食推荐"}


def test_deep_thinking_prints_thoughts_then_the_answer(server):
    app_id = server.app(enable_thinking=True)
    out = run_example("deep_thinking", server, app_id)
    before, _, answer = out.partition("==================== 完整回复 ====================")
    thinking = before.split("==================== 思考过程 ====================")[1]
    assert "I will repeat them as JSON" in thinking
    assert echoed(answer.strip()) == [{"role": "user", "content": "你是谁？"}]


def test_an_example_with_a_wrong_key_prints_the_error_fields(server):
    app_id = server.app()
    source = (EXAMPLES / "quickstart.py").read_text(encoding="utf-8").replace("YOUR_APP_ID", app_id)
    env = {**os.environ, "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url, "DASHSCOPE_API_KEY": "sk-wrong"}
    out = subprocess.run(
        [sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    assert "code=401" in out
    assert "message=Invalid API-key provided." in out
    assert re.search(r"request_id=[0-9a-f-]{36}", out)
