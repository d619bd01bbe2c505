"""The bundled Qwen2.5-Coder-0.5B-Instruct on xllamacpp: real answers, real tokens, real stops."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from openbailian.providers.base import GenerationOptions
from openbailian.providers.bundled import BUNDLED_SHA256, ensure_bundled_model
from openbailian.providers.local import LocalProvider

pytestmark = pytest.mark.slow

GREEDY = GenerationOptions(temperature=0.0, seed=1, max_tokens=64)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return ensure_bundled_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def run():
    """One event loop for the module: the provider's HTTP client lives on it."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture(scope="module")
def provider(model_path, run):
    local = LocalProvider(model_path, model_id="qwen2.5-coder-0.5b-instruct", n_ctx=2048, n_parallel=2)
    yield local
    run(local.aclose())


async def answer(provider, messages, options=GREEDY):
    pieces = [chunk async for chunk in provider.stream(messages, options)]
    return "".join(p.text for p in pieces), pieces[-1]


def test_bundled_model_is_joined_once_and_verified(model_path):
    stamp = model_path.with_suffix(".sha256")
    assert stamp.read_text().split()[0] == BUNDLED_SHA256
    before = model_path.stat().st_mtime_ns
    assert ensure_bundled_model(model_path.parent) == model_path
    assert model_path.stat().st_mtime_ns == before, "a verified file is not joined again"


def test_answers_an_english_question(provider, run):
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    text, last = run(answer(provider, messages))
    assert "paris" in text.lower()
    assert last.finish_reason == "stop"


def test_answers_in_chinese(provider, run):
    messages = [{"role": "user", "content": "中国的首都是哪个城市？请用中文回答。"}]
    text, _ = run(answer(provider, messages))
    assert "北京" in text


def test_usage_counts_come_from_the_models_tokenizer(provider, run):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    counted = run(provider.count_tokens(messages))
    _, last = run(answer(provider, messages))
    assert last.input_tokens == counted
    assert last.output_tokens and last.output_tokens > 0


def test_max_tokens_ends_with_length(provider, run):
    messages = [{"role": "user", "content": "Count from 1 to 100, separated by commas."}]
    _, last = run(answer(provider, messages, GenerationOptions(max_tokens=8, temperature=0.0)))
    assert last.finish_reason == "length"
    assert last.output_tokens == 8


def test_closing_the_stream_stops_decoding(provider, run):
    messages = [{"role": "user", "content": "Write a very long story about a cat, at least 500 words."}]

    async def read_three_then_close() -> float:
        stream = provider.stream(messages, GenerationOptions(max_tokens=600))
        count = 0
        async for _ in stream:
            count += 1
            if count == 3:
                break
        started = time.monotonic()
        await stream.aclose()
        return time.monotonic() - started

    # 600 tokens take ~10 s on two cores; a real stop returns at once.
    assert run(read_three_then_close()) < 2.0


def test_same_seed_same_answer(provider, run):
    messages = [{"role": "user", "content": "Give me a random fruit name."}]
    options = GenerationOptions(temperature=0.9, seed=42, max_tokens=16)
    first, _ = run(answer(provider, messages, options))
    second, _ = run(answer(provider, messages, options))
    assert first == second and re.search(r"\w", first)
