"""A deterministic model for testing apps without a model.

Its answer is the JSON (``ensure_ascii=False``) of ``{"messages": [...]}``:
exactly the messages it was given, system first, so a test can check the
context the engine built. It streams the answer in several pieces; with
thinking on it first streams a reasoning thought.

Tool calls, so tests can drive them: when tools are offered and the last
message is a user message containing ``#call <tool_name> {json args}`` (one or
more), it answers with those tool calls instead of text. After a tool message
it answers as usual, so its JSON then shows the tool results.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator

from openbailian.providers.base import (
    ChatMessage,
    GenerationOptions,
    ModelChunk,
    ToolCall,
    message_text,
)

__all__ = ["EchoProvider", "count_echo_tokens"]

# One token per CJK character, per word, per punctuation mark.
_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W\u3400-\u9fff\uf900-\ufaff]+|[^\w\s]")
_PIECES = 4
_MESSAGE_OVERHEAD = 4


def count_echo_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _truncate_to_tokens(text: str, limit: int) -> str:
    matches = list(_TOKEN.finditer(text))
    if len(matches) <= limit:
        return text
    return text[: matches[limit - 1].end()] if limit > 0 else ""


_CALL = re.compile(r"#call\s+([A-Za-z0-9_-]{1,64})\s*")


def _tool_calls(messages: list[ChatMessage]) -> list[ToolCall]:
    """``#call name {json}`` in the last message, when that is the user's."""
    if not messages or messages[-1].get("role") != "user":
        return []
    text = messages[-1].get("content") or ""
    calls: list[ToolCall] = []
    for match in _CALL.finditer(text):
        arguments: object = {}
        if text[match.end() :].startswith("{"):
            try:
                arguments, _ = json.JSONDecoder().raw_decode(text, match.end())
            except ValueError:
                arguments = {}
        decoded = arguments if isinstance(arguments, dict) else {}
        calls.append(ToolCall(f"call_{len(calls)}", match.group(1), decoded))
    return calls


class EchoProvider:
    def __init__(self, *, model_id: str = "echo", delay: float = 0.0, context_length: int = 32768):
        self.model_id = model_id
        self.context_length = context_length
        self._delay = delay

    async def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(count_echo_tokens(message_text(m)) + _MESSAGE_OVERHEAD for m in messages)

    async def stream(
        self, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[ModelChunk, None]:
        calls = _tool_calls(messages) if options.tools else []
        if calls:
            await self._pause()
            yield ModelChunk(tool_calls=calls)
            yield ModelChunk(
                finish_reason="tool_calls",
                input_tokens=await self.count_tokens(messages),
                output_tokens=sum(count_echo_tokens(json.dumps(c.arguments)) for c in calls),
            )
            return
        answer = json.dumps({"messages": messages}, ensure_ascii=False)
        finish_reason = "stop"
        output_tokens = count_echo_tokens(answer)
        if options.max_tokens is not None and output_tokens > options.max_tokens:
            answer = _truncate_to_tokens(answer, options.max_tokens)
            finish_reason = "length"
            output_tokens = count_echo_tokens(answer)
        if options.enable_thinking:
            reasoning = f"The user sent {len(messages)} messages; I will repeat them as JSON."
            output_tokens += count_echo_tokens(reasoning)
            for piece in _split(reasoning, 2):
                await self._pause()
                yield ModelChunk(reasoning=piece)
        for piece in _split(answer, _PIECES):
            await self._pause()
            yield ModelChunk(text=piece)
        yield ModelChunk(
            finish_reason=finish_reason,
            input_tokens=await self.count_tokens(messages),
            output_tokens=output_tokens,
        )

    async def _pause(self) -> None:
        # Always yield to the loop so a cancelled consumer stops us between pieces.
        await asyncio.sleep(self._delay)

    async def aclose(self) -> None:
        return None
