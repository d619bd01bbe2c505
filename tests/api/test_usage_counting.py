"""What the usage counters count, through the official dashscope SDK against a live server: a
model failure (before the answer, and mid-stream) is a call and an error; a stream the client
leaves is a call; calls refused before the app is known count nothing."""

from __future__ import annotations

import asyncio
import time

import dashscope
import httpx
from dashscope import Application

from openbailian.config import ModelSpec
from openbailian.services.usage import UsageRow, usage_report
from openbailian.storage.db import Database
from tests.api.test_errors import BrokenProvider
from tests.support import LiveServer, make_settings


def _usage(server: LiveServer, workspace: str = "ws1") -> dict[str, UsageRow]:
    async def read() -> dict[str, UsageRow]:
        db = Database(server.settings.resolved_database_url)
        try:
            async with db.session() as session:
                report = await usage_report(session, workspace, days=1)
        finally:
            await db.dispose()
        return {row.app_id: row for row in report.rows}

    return asyncio.run(read())


def test_a_model_failure_before_the_answer_is_a_call_and_an_error(server: LiveServer, monkeypatch) -> None:
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    server.runtime.models.register("echo", BrokenProvider(fail_at_start=True))
    app_id = server.app()
    assert Application.call(api_key=server.key(), app_id=app_id, prompt="x").status_code == 503
    row = _usage(server)[app_id]
    assert (row.calls, row.errors, row.output_tokens) == (1, 1, 0)


def test_a_model_failure_mid_stream_is_a_call_and_an_error(server: LiveServer, monkeypatch) -> None:
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    server.runtime.models.register("echo", BrokenProvider(fail_at_start=False))
    app_id = server.app()
    streamed = list(Application.call(api_key=server.key(), app_id=app_id, prompt="x", stream=True, incremental_output=True))
    assert streamed[0].status_code == 200 and streamed[-1].status_code == 503  # the error came mid-stream
    row = _usage(server)[app_id]
    assert (row.calls, row.errors) == (1, 1)


def test_refusals_before_the_app_is_known_count_nothing(server: LiveServer, monkeypatch) -> None:
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    app_id = server.app()
    assert Application.call(api_key="sk-" + "0" * 32, app_id=app_id, prompt="x").status_code == 401
    assert Application.call(api_key=server.key("ws2"), app_id=app_id, prompt="x").status_code == 404
    assert Application.call(api_key=server.key(), app_id="0" * 32, prompt="x").status_code == 404
    assert _usage(server) == {} and _usage(server, "ws2") == {}
    bad = server.call(app_id, {"input": {"prompt": "x"}, "parameters": {"top_p": "high"}})
    assert bad.status_code == 400  # the app is known: a call and an error
    assert (_usage(server)[app_id].calls, _usage(server)[app_id].errors) == (1, 1)


def test_a_stream_the_client_leaves_counts_as_a_call(tmp_path, database_url) -> None:
    settings = make_settings(
        tmp_path / "home", database_url, models={"slow-echo": ModelSpec(provider="echo", delay=0.5)}
    )
    server = LiveServer(settings).start()
    try:
        app_id = server.app(model="slow-echo")
        headers = {**server.auth(), "X-DashScope-SSE": "enable"}
        body = {"input": {"prompt": "一个很长的问题 " * 20}, "parameters": {"incremental_output": True}}
        with httpx.stream("POST", f"{server.url}/api/v1/apps/{app_id}/completion", json=body, headers=headers) as response:
            assert response.status_code == 200
            next(response.iter_lines())  # the first piece arrived; then the client goes away
        deadline = time.monotonic() + 60  # an upper bound, not a pace: the server notices the close
        while app_id not in _usage(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        row = _usage(server)[app_id]
        assert (row.calls, row.errors) == (1, 0)
    finally:
        server.stop()



def test_answered_calls_are_counted_with_their_tokens(server: LiveServer, monkeypatch) -> None:
    """Counted by the write that stores the turn: JSON and streamed, each once, with the
    tokens its answer reported, visible as soon as the answer is."""
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    app_id = server.app()
    plain = Application.call(api_key=server.key(), app_id=app_id, prompt="第一个问题")
    streamed = list(Application.call(api_key=server.key(), app_id=app_id, prompt="second question",
                                     stream=True, incremental_output=True))
    assert plain.status_code == 200 and streamed[-1].status_code == 200
    answers = [plain.usage.models[0], streamed[-1].usage.models[0]]
    row = _usage(server)[app_id]
    assert (row.calls, row.errors) == (2, 0)
    assert row.input_tokens == sum(m.input_tokens for m in answers) > 0
    assert row.output_tokens == sum(m.output_tokens for m in answers) > 0
