"""OpenAI ``chat.completion.chunk`` objects → :class:`ModelChunk`.

llama.cpp (the ``local`` provider) and every OpenAI-compatible server stream
the same chunk shape; this decoder is the one place that reads it:
``delta.reasoning_content`` (or ``delta.reasoning``) is thinking, ``delta.content``
is answer text with any inline ``<think>`` block split out, ``delta.tool_calls``
fragments are joined per index and released whole at the end, and ``usage``
carries the server's own token counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openbailian.providers.base import ModelChunk, ToolCall, decode_arguments
from openbailian.providers.thinking import ThinkTagSplitter

__all__ = ["ChatChunkDecoder"]


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class ChatChunkDecoder:
    split_think_tags: bool = True
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    _splitter: ThinkTagSplitter = field(default_factory=ThinkTagSplitter)
    _calls: dict[int, _PendingCall] = field(default_factory=dict)

    def feed(self, chunk: dict[str, Any]) -> ModelChunk | None:
        """The new text and thinking in one streamed chunk, or None when it has neither."""
        usage = chunk.get("usage")
        if usage:
            self.input_tokens = usage.get("prompt_tokens")
            self.output_tokens = usage.get("completion_tokens")
        reasoning, text = "", ""
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            reasoning += delta.get("reasoning_content") or delta.get("reasoning") or ""
            content = delta.get("content") or ""
            if content and self.split_think_tags:
                thought, content = self._splitter.feed(content)
                reasoning += thought
            text += content
            for fragment in delta.get("tool_calls") or []:
                self._add_call_fragment(fragment)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if not reasoning and not text:
            return None
        return ModelChunk(text=text, reasoning=reasoning)

    def finish(self) -> ModelChunk:
        """The closing chunk: held-back text, whole tool calls, finish reason and usage."""
        reasoning, text = self._splitter.flush() if self.split_think_tags else ("", "")
        calls = [self._complete(index, call) for index, call in sorted(self._calls.items())]
        finish_reason = self.finish_reason or "stop"
        if calls and finish_reason != "length":
            finish_reason = "tool_calls"
        return ModelChunk(
            text=text,
            reasoning=reasoning,
            finish_reason=finish_reason,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            tool_calls=calls,
        )

    def _add_call_fragment(self, fragment: dict[str, Any]) -> None:
        call = self._calls.setdefault(fragment.get("index", len(self._calls)), _PendingCall())
        call.id = call.id or fragment.get("id") or ""
        function = fragment.get("function") or {}
        # The name comes whole in the first fragment; some servers repeat it in every one.
        call.name = call.name or function.get("name") or ""
        call.arguments += function.get("arguments") or ""

    @staticmethod
    def _complete(index: int, call: _PendingCall) -> ToolCall:
        return ToolCall(call.id or f"call_{index}", call.name, decode_arguments(call.arguments))
