"""SSE streaming: framing byte by byte, incremental and cumulative text, thoughts,
disconnects and concurrent calls on one session."""

from __future__ import annotations

import asyncio
import json
import re

import dashscope
import httpx
import pytest
from dashscope import Application
from sqlalchemy import select

from openbailian.storage.models import SessionMessage
from tests.support import LiveServer, make_settings

SSE_HEADERS = {"X-DashScope-SSE": "enable", "Accept": "text/event-stream"}
BLOCK = re.compile(r"id:(\d+)\nevent:result\n:HTTP_STATUS/200\ndata:(\{.*\})\n\n")


def stream_raw(server, app_id: str, body: dict) -> httpx.Response:
    return server.http.post(
        f"/api/v1/apps/{app_id}/completion", json=body, headers={**server.auth(), **SSE_HEADERS}
    )


def blocks(response: httpx.Response) -> list[dict]:
    """Each SSE block's data, checking that the body is nothing but well-formed blocks."""
    text = response.text
    matches = list(BLOCK.finditer(text))
    assert "".join(m.group(0) for m in matches) == text, "unexpected bytes between blocks"
    assert [int(m.group(1)) for m in matches] == list(range(1, len(matches) + 1))
    return [json.loads(m.group(2)) for m in matches]


def test_sse_framing_byte_by_byte(server):
    app_id = server.app()
    response = stream_raw(server, app_id, {"input": {"prompt": "你好"}, "parameters": {"incremental_output": True}})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["cache-control"] == "no-cache"
    events = blocks(response)
    assert len(events) >= 3
    *middle, last = events
    request_ids = {e["request_id"] for e in events}
    assert request_ids == {response.headers["x-request-id"]}
    session_ids = {e["output"]["session_id"] for e in events}
    assert len(session_ids) == 1
    assert all(e["output"]["finish_reason"] == "null" for e in middle)
    assert all("usage" not in e for e in middle)
    assert last["output"]["finish_reason"] == "stop"
    assert last["output"]["text"] == ""
    assert last["usage"]["models"][0]["output_tokens"] > 0
    text = "".join(e["output"]["text"] for e in middle)
    assert json.loads(text) == {"messages": [{"role": "user", "content": "你好"}]}


def test_cumulative_stream_repeats_all_text_so_far(server):
    app_id = server.app()
    events = blocks(stream_raw(server, app_id, {"input": {"prompt": "hi"}}))
    texts = [e["output"]["text"] for e in events]
    assert len(texts) >= 3
    for before, after in zip(texts, texts[1:]):
        assert after.startswith(before)
    assert json.loads(texts[-1]) == {"messages": [{"role": "user", "content": "hi"}]}


def test_accept_event_stream_alone_asks_for_sse(server):
    app_id = server.app()
    response = server.http.post(
        f"/api/v1/apps/{app_id}/completion",
        json={"input": {"prompt": "hi"}},
        headers={**server.auth(), "Accept": "text/event-stream"},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert blocks(response)[-1]["output"]["finish_reason"] == "stop"


def test_thoughts_stream_before_the_answer_and_never_mix_into_text(server):
    app_id = server.app(enable_thinking=True)
    events = blocks(
        stream_raw(server, app_id, {"input": {"prompt": "hi"}, "parameters": {"incremental_output": True, "has_thoughts": True}})
    )
    kinds = ["thought" if e["output"]["thoughts"] else "text" for e in events[:-1]]
    assert kinds == sorted(kinds, key=lambda k: k != "thought"), "thoughts come first"
    assert "thought" in kinds and "text" in kinds
    reasoning = "".join(e["output"]["thoughts"][0]["thought"] for e in events if e["output"]["thoughts"])
    assert reasoning.startswith("The user sent 1 messages")
    answer = "".join(e["output"]["text"] for e in events)
    assert "The user sent" not in answer
    assert all(t["action_type"] == "reasoning" for e in events for t in (e["output"]["thoughts"] or []))


def test_without_has_thoughts_thinking_is_not_shown(server):
    app_id = server.app(enable_thinking=True)
    events = blocks(stream_raw(server, app_id, {"input": {"prompt": "hi"}, "parameters": {"incremental_output": True}}))
    assert all(e["output"]["thoughts"] is None for e in events)
    assert json.loads("".join(e["output"]["text"] for e in events))["messages"][0]["content"] == "hi"


@pytest.mark.parametrize(("app_switch", "parameter", "expect_thoughts"), [
    (True, False, False), (False, True, True), (True, None, True), (False, None, False),
])
def test_enable_thinking_parameter_wins_over_the_app_switch(server, app_switch, parameter, expect_thoughts):
    app_id = server.app(enable_thinking=app_switch)
    params = {"has_thoughts": True}
    if parameter is not None:
        params["enable_thinking"] = parameter
    body = server.call(app_id, {"input": {"prompt": "hi"}, "parameters": params}).json()
    assert (body["output"]["thoughts"] is not None) is expect_thoughts


@pytest.fixture
def sdk(server, monkeypatch):
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    return server


def test_sdk_stream_cumulative_mode(sdk):
    """SDK 2.0.2 asks for increments and rebuilds the whole text itself; both must agree."""
    app_id = sdk.app()
    responses = list(Application.call(
        api_key=sdk.key(), app_id=app_id, prompt="你好", stream=True, incremental_output=False
    ))
    assert all(r.status_code == 200 for r in responses)
    texts = [r.output.text for r in responses if r.output.text]
    for before, after in zip(texts, texts[1:]):
        assert after.startswith(before)
    assert json.loads(texts[-1])["messages"] == [{"role": "user", "content": "你好"}]
    assert responses[-1].output.finish_reason == "stop"
    assert responses[-1].usage.models[0].output_tokens > 0


def test_sdk_default_stream_is_cumulative(sdk):
    app_id = sdk.app()
    responses = list(Application.call(api_key=sdk.key(), app_id=app_id, prompt="hi", stream=True))
    texts = [r.output.text for r in responses]
    assert json.loads(texts[-1])["messages"][0]["content"] == "hi"
    assert all(texts[-1].startswith(t) for t in texts)


def test_sdk_workspace_header_selects_the_workspace(sdk):
    app_id = sdk.app(workspace="ws1")
    ok = Application.call(api_key=sdk.key("ws1"), app_id=app_id, prompt="hi", workspace="ws1")
    assert ok.status_code == 200
    denied = Application.call(api_key=sdk.key("ws1"), app_id=app_id, prompt="hi", workspace="ws2")
    assert denied.status_code == 403
    assert denied.code == "Workspace.AccessDenied"


@pytest.fixture
def slow_server(tmp_path, database_url):
    settings = make_settings(
        tmp_path / "home", database_url, models={"slow": {"provider": "echo", "delay": 0.3}}
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


async def _stored(server, session_id: str) -> list[SessionMessage]:
    async with server.runtime.db.session() as session:
        rows = await session.scalars(
            select(SessionMessage).where(SessionMessage.session_id == session_id).order_by(SessionMessage.seq)
        )
        return list(rows)


def stored(server, session_id: str) -> list[SessionMessage]:
    return asyncio.run(_stored(server, session_id))


def test_client_disconnect_stops_generation_and_stores_the_cut_answer(slow_server):
    app_id = slow_server.app(model="slow")
    body = {"input": {"prompt": "long answer please"}, "parameters": {"incremental_output": True}}
    with slow_server.http.stream(
        "POST", f"/api/v1/apps/{app_id}/completion", json=body, headers={**slow_server.auth(), **SSE_HEADERS}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                first = json.loads(line[5:])
                break
    session_id = first["output"]["session_id"]
    rows = []
    for _ in range(100):
        rows = stored(slow_server, session_id)
        if rows:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert [r.role for r in rows] == ["user", "assistant"]
    user, answer = rows
    assert user.content == "long answer please" and not user.cut
    assert answer.cut, "the answer must be marked as cut"
    full = json.dumps({"messages": [{"role": "user", "content": "long answer please"}]}, ensure_ascii=False)
    assert full.startswith(answer.content) and len(answer.content) < len(full)
    # The next turn sees the cut answer as history.
    follow = slow_server.call(app_id, {"input": {"prompt": "go on", "session_id": session_id}})
    messages = json.loads(follow.json()["output"]["text"])["messages"]
    assert messages[1] == {"role": "assistant", "content": answer.content}


def test_concurrent_calls_on_one_session_never_interleave(slow_server):
    app_id = slow_server.app(model="slow")
    session_id = slow_server.call(app_id, {"input": {"prompt": "start"}}).json()["output"]["session_id"]

    async def call(client: httpx.AsyncClient, n: int) -> int:
        response = await client.post(
            f"/api/v1/apps/{app_id}/completion",
            json={"input": {"prompt": f"turn {n}", "session_id": session_id}, "parameters": {"max_tokens": 4000}},
            headers=slow_server.auth(),
        )
        return response.status_code

    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=slow_server.url, timeout=60) as client:
            return await asyncio.gather(*(call(client, n) for n in range(4)))

    assert asyncio.run(main()) == [200] * 4
    rows = stored(slow_server, session_id)
    assert [r.seq for r in rows] == list(range(10))
    assert [r.role for r in rows] == ["user", "assistant"] * 5
    assert sorted(r.content for r in rows[2::2]) == [f"turn {n}" for n in range(4)]
    # Each answer echoes the context of its own turn: its own prompt last, after every turn
    # stored before it (all four read the session before queueing for it: none may run on
    # what it read then).
    for k, (user, answer) in enumerate(zip(rows[2::2], rows[3::2])):
        seen = json.loads(answer.content)["messages"]
        assert seen[-1]["content"] == user.content
        assert [m["content"] for m in seen if m["role"] == "user"] == [r.content for r in rows[0 : 2 * k + 3 : 2]]


@pytest.fixture
def quiet_model_server(tmp_path, database_url):
    settings = make_settings(
        tmp_path / "home", database_url, models={"slow": {"provider": "echo", "delay": 0.4}},
        sse_keepalive_seconds=0.1, model_timeout_seconds=1.0,
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


def test_keepalive_comments_fill_long_silences(quiet_model_server):
    app_id = quiet_model_server.app(model="slow")
    response = stream_raw(quiet_model_server, app_id, {"input": {"prompt": "hi"}, "parameters": {"incremental_output": True}})
    assert ": keep-alive\n\n" in response.text
    # The SDK's parser skips comments: the answer is intact.
    text = "".join(
        json.loads(line[5:])["output"]["text"] for line in response.text.splitlines() if line.startswith("data:")
    )
    assert json.loads(text)["messages"] == [{"role": "user", "content": "hi"}]


def test_a_silent_model_times_out_with_504(quiet_model_server):
    from openbailian.providers.base import ModelChunk

    class Stuck:
        model_id, context_length = "stuck", 4096

        async def count_tokens(self, messages):
            return 1

        async def stream(self, messages, options):
            yield ModelChunk(text="a")
            await asyncio.sleep(30)
            yield ModelChunk(text="never")

        async def aclose(self):
            pass

    quiet_model_server.runtime.models.register("echo", Stuck())
    app_id = quiet_model_server.app()
    response = quiet_model_server.call(app_id, {"input": {"prompt": "hi"}})
    assert response.status_code == 504
    assert response.json()["code"] == "ModelServiceTimeout"


def test_two_processes_on_one_session_lose_no_turn(tmp_path, database_url):
    """Two servers on one database (as two API processes): per-process locks do not
    see each other, so the database constraint and a retry keep the turns whole."""
    home = tmp_path / "home"
    url = database_url or f"sqlite:///{home / 'shared.db'}"
    settings = make_settings(home, url, models={"slow": {"provider": "echo", "delay": 0.05}})
    first, second = LiveServer(settings).start(), LiveServer(settings).start()
    try:
        app_id = first.app(model="slow")
        second._keys = dict(first._keys)
        session_id = first.call(app_id, {"input": {"prompt": "start"}}).json()["output"]["session_id"]

        async def call(live: LiveServer, n: int) -> int:
            async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
                response = await client.post(
                    f"/api/v1/apps/{app_id}/completion",
                    json={"input": {"prompt": f"turn {n}", "session_id": session_id}},
                    headers=live.auth(),
                )
                return response.status_code

        async def main() -> list[int]:
            return await asyncio.gather(*(call(first if n % 2 else second, n) for n in range(6)))

        assert asyncio.run(main()) == [200] * 6
        rows = stored(first, session_id)
        assert [r.seq for r in rows] == list(range(14))
        assert [r.role for r in rows] == ["user", "assistant"] * 7
        assert sorted(r.content for r in rows[2::2]) == [f"turn {n}" for n in range(6)]
        for user, answer in zip(rows[2::2], rows[3::2]):
            assert user.request_id == answer.request_id, "a turn's two messages stay together"
    finally:
        first.stop()
        second.stop()
