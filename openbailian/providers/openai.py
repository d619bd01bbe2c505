"""A model behind any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp, DashScope).

One :class:`OpenAIProvider` owns one ``httpx.AsyncClient``. Each call to
:meth:`OpenAIProvider.stream` sends ``POST {base_url}/chat/completions`` with
``stream: true`` and decodes the server-sent events with
:class:`~openbailian.providers.chat_chunks.ChatChunkDecoder` (shared with the
``local`` provider): reasoning fields and inline ``<think>`` blocks become
``reasoning``, tool call fragments are released whole in the last chunk, which
also carries ``finish_reason`` and the server's token counts (estimated when
the server sends no ``usage``).

Connection errors, 429 and 5xx are retried (exponential backoff, ``Retry-After``
honoured up to a cap) as long as nothing was streamed yet. The API key is sent
as a Bearer token and never appears in errors or logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from openbailian.providers.base import (
    ChatMessage,
    GenerationOptions,
    ModelChunk,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    message_text,
)
from openbailian.providers.chat_chunks import ChatChunkDecoder

__all__ = ["OpenAIProvider", "estimate_tokens"]

logger = logging.getLogger("openbailian.providers.openai")

_MESSAGE_OVERHEAD = 4
_CHARS_PER_TOKEN = 4
# Han, kana, Hangul, CJK punctuation and full-width forms: about one token each.
_CJK = re.compile(
    r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
_MAX_SERVER_MESSAGE = 500


def estimate_tokens(text: str) -> int:
    """Rough token count of ``text``: one per CJK character, one per 4 other characters."""
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / _CHARS_PER_TOKEN)


class OpenAIProvider:
    """A chat model served over the OpenAI chat completions protocol."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        context_length: int = 32768,
        timeout: float = 60.0,
        max_retries: int = 2,
        model_id: str | None = None,
        retry_backoff: float = 0.5,
        retry_backoff_max: float = 20.0,
    ) -> None:
        self.model_id = model_id or model
        self.context_length = context_length
        self._model = model
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key or ""
        self._max_retries = max(0, max_retries)
        self._retry_backoff = retry_backoff
        self._retry_backoff_max = retry_backoff_max
        server = httpx.URL(base_url)  # netloc leaves out any user:password@
        self._where = f"model '{model}' at {server.scheme}://{server.netloc.decode()}"
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout))

    async def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Estimate of the prompt's tokens, used only to trim history.

        One token per CJK character, one per 4 other characters, plus 4 per
        message for the chat template's framing. The exact count the server's
        tokenizer gives is reported in the last streamed chunk instead.
        """
        return sum(estimate_tokens(message_text(m)) + _MESSAGE_OVERHEAD for m in messages)

    async def stream(
        self, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[ModelChunk, None]:
        body = self._request_body(messages, options)
        response = await self._send(body)
        try:
            decoder = ChatChunkDecoder()
            said: list[str] = []  # for a token estimate when the server reports no usage
            try:
                async for payload in self._payloads(response, decoder):
                    chunk = decoder.feed(payload)
                    if chunk is not None:
                        said += [chunk.reasoning, chunk.text]
                        yield chunk
            except httpx.TimeoutException:
                raise ModelTimeout(f"{self._where} stopped sending for too long") from None
            except httpx.TransportError as error:
                raise ModelUnavailable(
                    f"Connection to {self._where} broke mid-answer: {type(error).__name__}"
                ) from None
            yield await self._last_chunk(decoder.finish(), messages, said)
        finally:
            # Closing an unfinished response drops the connection: the server stops generating.
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _last_chunk(
        self, last: ModelChunk, messages: list[ChatMessage], said: list[str]
    ) -> ModelChunk:
        last.finish_reason = _FINISH_REASONS.get(last.finish_reason or "", "stop")
        if last.input_tokens is None:
            last.input_tokens = await self.count_tokens(messages)
        if last.output_tokens is None:
            said += [last.reasoning, last.text]
            said += [c.name + json.dumps(c.arguments) for c in last.tool_calls]
            last.output_tokens = estimate_tokens("".join(said))
        return last

    def _request_body(
        self, messages: list[ChatMessage], options: GenerationOptions
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [_wire_message(m) for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            # vLLM/llama.cpp read chat_template_kwargs; DashScope reads the top-level flag.
            "chat_template_kwargs": {"enable_thinking": options.enable_thinking},
            "enable_thinking": options.enable_thinking,
        }
        optional = {
            "temperature": options.temperature,
            "top_p": options.top_p,
            "top_k": options.top_k,
            "seed": options.seed,
            "max_tokens": options.max_tokens,
            "stop": list(options.stop) or None,
            "tools": list(options.tools) or None,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body

    async def _send(self, body: dict[str, Any]) -> httpx.Response:
        """An open, successful streaming response; retries refusals that may pass."""
        attempts = self._max_retries + 1
        for attempt in range(attempts):
            try:
                request = self._client.build_request("POST", self._url, json=body)
                response = await self._client.send(request, stream=True)
            except httpx.TimeoutException:
                raise ModelTimeout(f"{self._where} did not answer in time") from None
            except httpx.TransportError as error:
                failure: ModelError = ModelUnavailable(
                    f"Cannot reach {self._where}: {type(error).__name__}"
                    f" (after {attempt + 1} attempt{'s' if attempt else ''})",
                    {"attempts": attempt + 1},
                )
                delay = self._backoff(attempt)
            else:
                if response.is_success:
                    return response
                failure, retry_after = await self._refusal(response, attempt + 1)
                if not isinstance(failure, ModelUnavailable):
                    raise failure
                delay = self._backoff(attempt) if retry_after is None else retry_after
            if attempt + 1 < attempts:
                delay = min(delay, self._retry_backoff_max)
                logger.warning("%s; retrying in %.2fs", failure.message, delay)
                await asyncio.sleep(delay)
        raise failure

    def _backoff(self, attempt: int) -> float:
        return float(min(self._retry_backoff * 2**attempt, self._retry_backoff_max))

    async def _refusal(
        self, response: httpx.Response, attempts: int
    ) -> tuple[ModelError, float | None]:
        """The error for a non-2xx answer, and how long the server asked us to wait."""
        try:
            await response.aread()
        except httpx.HTTPError:
            pass
        finally:
            await response.aclose()
        status = response.status_code
        detail = self._redact(_server_message(response))[:_MAX_SERVER_MESSAGE]
        details: dict[str, object] = {"status": status, "server_message": detail}
        if status == 429 or status >= 500:
            details["attempts"] = attempts
            message = (
                f"{self._where} refused with HTTP {status} after {attempts}"
                f" attempt{'s' if attempts > 1 else ''}: {detail}"
            )
            return ModelUnavailable(message, details), _retry_after(response)
        return ModelError(
            f"{self._where} rejected the request with HTTP {status}: {detail}", details
        ), None

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    async def _payloads(
        self, response: httpx.Response, decoder: ChatChunkDecoder
    ) -> AsyncIterator[dict[str, Any]]:
        """The JSON objects of the answer: one per SSE ``data:`` line, until ``[DONE]``."""
        if response.headers.get("content-type", "").startswith("application/json"):
            # A server that ignored ``stream: true`` answers with one whole completion.
            yield _as_delta(self._decode(await response.aread()))
            return
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, ": keep-alive" comments, event:/id: fields
            data = line[5:].strip()
            if data == "[DONE]":
                return
            if data:
                yield self._decode(data)
        if decoder.finish_reason is None:
            raise ModelUnavailable(f"{self._where} ended the stream before the answer was complete")

    def _decode(self, data: str | bytes) -> dict[str, Any]:
        try:
            payload = json.loads(data)
        except ValueError:
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            raise ModelError(
                f"{self._where} sent an unreadable event: {self._redact(text)[:200]}"
            ) from None
        if not isinstance(payload, dict):
            raise ModelError(
                f"{self._where} sent an unexpected event: {self._redact(str(payload))[:200]}"
            )
        if payload.get("error"):  # vLLM and others report failures mid-stream as an event
            detail = self._redact(_error_text(payload))[:_MAX_SERVER_MESSAGE]
            raise ModelError(f"{self._where} failed mid-answer: {detail}")
        return payload


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    """``message`` as the OpenAI protocol wants it: tool call arguments as JSON strings."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    wired = []
    for call in calls:
        function = dict(call.get("function", {}))
        if not isinstance(function.get("arguments", ""), str):
            function["arguments"] = json.dumps(function["arguments"], ensure_ascii=False)
        wired.append({**call, "type": call.get("type", "function"), "function": function})
    return {**message, "tool_calls": wired}


def _as_delta(completion: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed completion in the shape of one streamed chunk."""
    choices = []
    for choice in completion.get("choices") or ():
        message = dict(choice.get("message") or {})
        message["tool_calls"] = [
            {"index": index, **call} for index, call in enumerate(message.get("tool_calls") or ())
        ]
        choices.append({**choice, "delta": message})
    return {**completion, "choices": choices}


def _server_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    return _error_text(payload) or response.reason_phrase


def _error_text(payload: Any) -> str:
    """The message in OpenAI ``{"error": {"message"}}``, Ollama ``{"error": str}`` and others."""
    if isinstance(payload, dict):
        for key in ("error", "message", "detail", "msg"):
            if payload.get(key):
                return _error_text(payload[key])
        return json.dumps(payload, ensure_ascii=False)
    if isinstance(payload, list):
        return "; ".join(_error_text(item) for item in payload)
    return str(payload)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
