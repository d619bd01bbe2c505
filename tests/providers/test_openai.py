"""OpenAIProvider against a fake OpenAI-compatible server on a real local socket."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import pytest

from openbailian.config import Settings
from openbailian.providers.base import (
    GenerationOptions,
    ModelChunk,
    ModelError,
    ModelProvider,
    ModelTimeout,
    ModelUnavailable,
    ToolCall,
)
from openbailian.providers.openai import OpenAIProvider
from openbailian.providers.registry import ModelRegistry

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
API_KEY = "sk-secret-test-key-123"


def chunk(
    content: str | None = None,
    *,
    reasoning_content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as vLLM streams it."""
    fields = {
        "content": content,
        "reasoning_content": reasoning_content,
        "reasoning": reasoning,
        "tool_calls": tool_calls,
    }
    delta = {key: value for key, value in fields.items() if value is not None}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "qwen-plus",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The usage-only chunk sent last when ``stream_options.include_usage`` is set."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@pytest.fixture
async def make_provider(fake_openai) -> AsyncIterator[Callable[..., OpenAIProvider]]:
    made: list[OpenAIProvider] = []

    def make(base_url: str | None = None, **kwargs: Any) -> OpenAIProvider:
        kwargs = {"api_key": API_KEY, "timeout": 5.0, "retry_backoff": 0.01, **kwargs}
        provider = OpenAIProvider(base_url or fake_openai.url, "qwen-plus", **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
def provider(make_provider) -> OpenAIProvider:
    return make_provider()


async def collect(provider: OpenAIProvider, messages=MESSAGES, **options: Any) -> list[ModelChunk]:
    async with aclosing(provider.stream(messages, GenerationOptions(**options))) as chunks:
        return [c async for c in chunks]


def joined(chunks: list[ModelChunk]) -> tuple[str, str]:
    return "".join(c.reasoning for c in chunks), "".join(c.text for c in chunks)


# --- streaming ---------------------------------------------------------------------------------


async def test_streams_text_and_reports_the_servers_usage(fake_openai, provider):
    fake_openai.add(
        events=[chunk("Hel"), chunk("lo, "), chunk("world", finish_reason="stop"), usage(17, 3)]
    )

    chunks = await collect(provider)

    assert [c.text for c in chunks if c.text] == ["Hel", "lo, ", "world"]
    last = chunks[-1]
    assert (last.finish_reason, last.input_tokens, last.output_tokens) == ("stop", 17, 3)
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert isinstance(provider, ModelProvider)


async def test_reasoning_fields_become_reasoning_not_text(fake_openai, provider):
    fake_openai.add(
        events=[
            chunk(reasoning_content="Let me "),
            chunk(reasoning="think."),  # the field name some servers use
            chunk("Answer."),
            chunk(finish_reason="stop"),
            usage(5, 9),
        ]
    )

    assert joined(await collect(provider, enable_thinking=True)) == ("Let me think.", "Answer.")


async def test_inline_think_tags_split_across_chunk_boundaries(fake_openai, provider):
    pieces = ["<thi", "nk>I should ", "greet.</th", "ink>", "\n\nHi ", "<", "there>", "!"]
    fake_openai.add(events=[*[chunk(p) for p in pieces], chunk(finish_reason="stop")])

    reasoning, text = joined(await collect(provider, enable_thinking=True))

    assert reasoning == "I should greet."
    assert text == "Hi <there>!"


async def test_tool_call_fragments_are_assembled_into_complete_calls(fake_openai, provider):
    first = {"index": 0, "id": "call_a", "function": {"name": "get_weather", "arguments": ""}}
    second = {"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": '{"tz"'}}
    fake_openai.add(
        events=[
            chunk(tool_calls=[first]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
            chunk(tool_calls=[second]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": '"杭州"}'}}]),
            chunk(tool_calls=[{"index": 1, "function": {"arguments": ': "UTC"}'}}]),
            chunk(finish_reason="tool_calls"),
            usage(30, 12),
        ]
    )

    chunks = await collect(
        provider, tools=({"type": "function", "function": {"name": "get_weather"}},)
    )

    calls = [call for c in chunks for call in c.tool_calls]
    assert calls == [
        ToolCall("call_a", "get_weather", {"city": "杭州"}),
        ToolCall("call_b", "get_time", {"tz": "UTC"}),
    ]
    assert sum(1 for c in chunks if c.tool_calls) == 1  # emitted once, complete
    assert chunks[-1].finish_reason == "tool_calls"


async def test_whole_tool_calls_without_index_stay_separate(fake_openai, provider):
    # Older Ollama streams each call whole, without "index".
    weather = {"id": "c1", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    clock = {"id": "c2", "function": {"name": "clock", "arguments": "{}"}}
    fake_openai.add(
        events=[chunk(tool_calls=[weather]), chunk(tool_calls=[clock]), chunk(finish_reason="stop")]
    )

    calls = [call for c in await collect(provider) for call in c.tool_calls]

    assert calls == [
        ToolCall("c1", "weather", {"city": "Paris"}),
        ToolCall("c2", "clock", {}),
    ]


async def test_unparsable_tool_arguments_are_passed_raw(fake_openai, provider):
    broken = {"index": 0, "id": "call_x", "function": {"name": "f", "arguments": '{"a": 1'}}
    fake_openai.add(events=[chunk(tool_calls=[broken]), chunk(finish_reason="tool_calls")])

    calls = [call for c in await collect(provider) for call in c.tool_calls]

    assert calls == [ToolCall("call_x", "f", {"_raw": '{"a": 1'})]


async def test_tool_call_answer_finishes_as_tool_calls_even_if_server_says_stop(
    fake_openai, provider
):
    call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
    fake_openai.add(events=[chunk(tool_calls=[call]), chunk(finish_reason="stop")])

    chunks = await collect(provider)

    assert chunks[-1].finish_reason == "tool_calls"
    assert [call for c in chunks for call in c.tool_calls] == [
        ToolCall("c1", "f", {})
    ]


async def test_length_finish_reason_is_kept(fake_openai, provider):
    fake_openai.add(events=[chunk("cut"), chunk(finish_reason="length"), usage(3, 1)])

    assert (await collect(provider, max_tokens=1))[-1].finish_reason == "length"


async def test_without_server_usage_tokens_are_estimated(fake_openai, provider):
    fake_openai.add(events=[chunk("你好世界"), chunk(finish_reason="stop")])

    last = (await collect(provider))[-1]

    assert last.output_tokens == 4
    assert last.input_tokens == await provider.count_tokens(MESSAGES)


async def test_server_that_ignores_stream_true_is_still_understood(fake_openai, provider):
    fake_openai.add(
        json={
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "<think>hm</think>Whole answer."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": 4},
        }
    )

    chunks = await collect(provider)

    assert joined(chunks) == ("hm", "Whole answer.")
    assert (chunks[-1].finish_reason, chunks[-1].input_tokens, chunks[-1].output_tokens) == (
        "stop",
        8,
        4,
    )


async def test_stream_cut_before_finishing_is_an_error(fake_openai, provider):
    fake_openai.add(events=[chunk("partial")], done=False)

    with pytest.raises(ModelUnavailable, match="before the answer was complete"):
        await collect(provider)


async def test_error_event_mid_stream_is_a_model_error_and_not_retried(fake_openai, provider):
    fake_openai.add(events=[chunk("a"), {"error": {"message": "CUDA out of memory", "code": 500}}])

    with pytest.raises(ModelError, match="CUDA out of memory"):
        await collect(provider)
    assert len(fake_openai.requests) == 1


# --- the request -------------------------------------------------------------------------------


async def test_options_reach_the_request_body(fake_openai, provider):
    fake_openai.add(events=[chunk("ok", finish_reason="stop")])
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}

    await collect(
        provider,
        temperature=0.3,
        top_p=0.8,
        top_k=20,
        seed=42,
        max_tokens=128,
        stop=("END",),
        enable_thinking=True,
        tools=(tool,),
    )

    body = fake_openai.requests[0].body
    assert body["model"] == "qwen-plus"
    assert body["messages"] == MESSAGES
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (0.3, 0.8, 20, 42)
    assert (body["max_tokens"], body["stop"], body["tools"]) == (128, ["END"], [tool])
    assert body["enable_thinking"] is True
    assert body["chat_template_kwargs"] == {"enable_thinking": True}


async def test_unset_options_are_not_sent_and_thinking_off_is_explicit(fake_openai, provider):
    fake_openai.add(events=[chunk("ok", finish_reason="stop")])

    await collect(provider)

    body = fake_openai.requests[0].body
    for absent in ("temperature", "top_p", "top_k", "seed", "max_tokens", "stop", "tools"):
        assert absent not in body
    assert body["enable_thinking"] is False
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


async def test_history_tool_calls_are_sent_with_json_string_arguments(fake_openai, provider):
    fake_openai.add(events=[chunk("ok", finish_reason="stop")])
    history = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "function": {"name": "w", "arguments": {"city": "杭州"}}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]

    await collect(provider, messages=history)

    sent = fake_openai.requests[0].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "杭州"}'
    assert sent[2] == history[2]
    assert history[1]["tool_calls"][0]["function"]["arguments"] == {
        "city": "杭州"
    }  # caller's copy untouched


async def test_api_key_is_sent_as_bearer(fake_openai, provider):
    fake_openai.add(events=[chunk("ok", finish_reason="stop")])

    await collect(provider)

    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_without_api_key_no_authorization_header(fake_openai, make_provider):
    fake_openai.add(events=[chunk("ok", finish_reason="stop")])

    await collect(make_provider(api_key=None))

    assert "authorization" not in fake_openai.requests[0].headers


# --- failures and retries ----------------------------------------------------------------------


async def test_503_is_retried_then_succeeds(fake_openai, provider):
    fake_openai.add(status=503, json={"error": {"message": "overloaded"}})
    fake_openai.add(events=[chunk("fine", finish_reason="stop"), usage(1, 1)])

    chunks = await collect(provider)

    assert joined(chunks) == ("", "fine")
    assert len(fake_openai.requests) == 2


async def test_429_waits_as_long_as_retry_after_says(fake_openai, make_provider):
    provider = make_provider(retry_backoff=0.001)
    fake_openai.add(
        status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "0.4"}
    )
    fake_openai.add(events=[chunk("ok", finish_reason="stop")])

    started = time.monotonic()
    chunks = await collect(provider)

    assert time.monotonic() - started >= 0.35
    assert joined(chunks)[1] == "ok"


async def test_retry_after_is_capped(fake_openai, make_provider):
    provider = make_provider(retry_backoff_max=0.05)
    fake_openai.add(
        status=429, json={"error": {"message": "later"}}, headers={"Retry-After": "3600"}
    )
    fake_openai.add(events=[chunk("ok", finish_reason="stop")])

    started = time.monotonic()
    await collect(provider)

    assert time.monotonic() - started < 2


async def test_exhausted_retries_raise_model_unavailable_with_the_servers_message(
    fake_openai, make_provider
):
    provider = make_provider(max_retries=2)
    for _ in range(3):
        fake_openai.add(status=502, json={"error": {"message": "upstream gone"}})

    with pytest.raises(ModelUnavailable) as caught:
        await collect(provider)

    assert len(fake_openai.requests) == 3
    message = caught.value.message
    assert "502" in message and "upstream gone" in message and "3 attempts" in message
    assert caught.value.details["status"] == 502


async def test_connection_refused_is_retried_then_model_unavailable(make_provider, unreachable_url):
    provider = make_provider(unreachable_url, max_retries=1)

    with pytest.raises(
        ModelUnavailable, match=r"Cannot reach model 'qwen-plus' at http://127\.0\.0\.1"
    ):
        await collect(provider)


async def test_no_answer_in_time_is_model_timeout(fake_openai, make_provider):
    provider = make_provider(timeout=0.2)
    # Held until the client gave up: however slow the machine, no answer can arrive in time
    # (a fixed server delay could elapse before a starved client noticed its timeout).
    answer = threading.Event()
    fake_openai.add(events=[chunk("late", finish_reason="stop")], hold=answer)

    try:
        with pytest.raises(ModelTimeout):
            await collect(provider)
    finally:
        answer.set()
    # The server may record the request after the client gave up; the client sends no other.
    assert await _wait_until(lambda: len(fake_openai.requests) >= 1, seconds=60)
    assert len(fake_openai.requests) == 1  # a timeout is not retried


async def test_stream_that_stalls_is_model_timeout(fake_openai, make_provider):
    provider = make_provider(timeout=0.2)
    fake_openai.add(events=[chunk("first")], stall=1.0)
    received: list[ModelChunk] = []

    with pytest.raises(ModelTimeout, match="stopped sending"):
        async with aclosing(provider.stream(MESSAGES, GenerationOptions())) as chunks:
            async for c in chunks:
                received.append(c)

    assert [c.text for c in received] == ["first"]


async def test_400_is_a_model_error_with_the_servers_message_and_not_retried(fake_openai, provider):
    vllm_error = {"object": "error", "message": "max_tokens must be at most 8192", "code": 400}
    fake_openai.add(status=400, json=vllm_error)

    with pytest.raises(ModelError) as caught:
        await collect(provider)

    assert type(caught.value) is ModelError
    assert (
        "HTTP 400" in caught.value.message
        and "max_tokens must be at most 8192" in caught.value.message
    )
    assert len(fake_openai.requests) == 1


async def test_plain_text_error_body_is_shown(fake_openai, provider):
    fake_openai.add(status=404, json="model 'qwen-plus' not found")

    with pytest.raises(ModelError, match="model 'qwen-plus' not found"):
        await collect(provider)


async def test_api_key_never_appears_in_errors(fake_openai, provider, caplog):
    echoed = {"error": {"message": f"Incorrect API key provided: {API_KEY}"}}
    fake_openai.add(status=401, json=echoed)
    fake_openai.add(status=500, json=echoed)
    fake_openai.add(status=500, json=echoed)
    fake_openai.add(status=500, json=echoed)

    for _ in range(2):
        with pytest.raises(ModelError) as caught:
            await collect(provider)
        assert API_KEY not in str(caught.value) and API_KEY not in repr(caught.value)
        assert "Incorrect API key provided: ***" in str(caught.value)
    assert "retrying" in caplog.text  # the retries were logged, without the key
    assert API_KEY not in caplog.text


# --- cancellation ------------------------------------------------------------------------------


async def _wait_until(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _assert_server_stopped_sending(fake_openai) -> None:
    (request,) = fake_openai.requests
    assert await _wait_until(request.client_left.is_set), "the server never saw the client leave"
    sent = request.events_sent
    await asyncio.sleep(0.2)
    assert request.events_sent == sent


async def test_closing_the_stream_disconnects_from_the_server(fake_openai, provider):
    fake_openai.add(events=[chunk("a")], endless=True)

    chunks = provider.stream(MESSAGES, GenerationOptions())
    assert (await anext(chunks)).text == "a"
    assert (await anext(chunks)).text == "more "
    await chunks.aclose()

    await _assert_server_stopped_sending(fake_openai)


async def test_cancelling_the_consumer_task_disconnects_from_the_server(fake_openai, provider):
    fake_openai.add(events=[chunk("a")], endless=True)
    received: list[ModelChunk] = []

    async def consume() -> None:
        async with aclosing(provider.stream(MESSAGES, GenerationOptions())) as chunks:
            async for c in chunks:
                received.append(c)

    task = asyncio.create_task(consume())
    assert await _wait_until(lambda: len(received) >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await _assert_server_stopped_sending(fake_openai)
    assert joined(received)[1].startswith("amore more ")
    # The provider stays usable after a cancelled stream.
    fake_openai.add(events=[chunk("again", finish_reason="stop")])
    assert joined(await collect(provider))[1] == "again"


# --- token estimate ----------------------------------------------------------------------------


async def test_count_tokens_estimates_cjk_per_character_and_latin_per_four_chars(provider):
    assert await provider.count_tokens([{"role": "user", "content": "你好世界"}]) == 4 + 4
    assert await provider.count_tokens([{"role": "user", "content": "abcdefgh"}]) == 2 + 4
    assert await provider.count_tokens([{"role": "assistant", "content": None}]) == 4
    longer = [{"role": "user", "content": "x" * 400}]
    assert await provider.count_tokens(longer) > await provider.count_tokens(MESSAGES)


# --- through the app's settings ----------------------------------------------------------------


async def test_registry_builds_the_provider_from_settings(fake_openai, tmp_path):
    remote = {
        "provider": "openai",
        "base_url": fake_openai.url,
        "model": "qwen-plus",
        "api_key": "x",
    }
    settings = Settings(home=tmp_path, models={"remote": remote})
    registry = ModelRegistry(settings)
    try:
        provider = await registry.get("remote")
        assert isinstance(provider, OpenAIProvider)
        assert provider.model_id == "qwen-plus"
        assert provider.context_length == 32768

        fake_openai.add(events=[chunk("remote says hi", finish_reason="stop"), usage(4, 3)])
        chunks = await collect(provider)
    finally:
        await registry.aclose()

    assert joined(chunks)[1] == "remote says hi"
    assert fake_openai.requests[0].headers["authorization"] == "Bearer x"


async def test_models_from_the_environment_reach_the_provider(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv(
        "OPENBAILIAN_MODELS",
        json.dumps(
            {
                "qwen": {
                    "provider": "openai",
                    "base_url": fake_openai.url,
                    "model": "qwen3-8b",
                    "model_id": "qwen3",
                    "max_retries": 0,
                }
            }
        ),
    )
    registry = ModelRegistry(Settings(home=tmp_path))
    try:
        provider = await registry.get("qwen")
        fake_openai.add(status=503, json={"error": {"message": "busy"}})
        with pytest.raises(ModelUnavailable, match="after 1 attempt: busy"):
            await collect(provider)
    finally:
        await registry.aclose()

    assert provider.model_id == "qwen3"
    assert fake_openai.requests[0].body["model"] == "qwen3-8b"
    assert len(fake_openai.requests) == 1
