"""The protocol every model provider implements.

A provider turns a list of chat messages into a stream of :class:`ModelChunk`.
Closing the async iterator early (``aclose()``, or the task being cancelled)
must stop generation for real: the local model stops decoding, the HTTP client
closes its connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# The model errors are part of the one error tree; named here too for providers.
from openbailian.errors import ModelError, ModelTimeout, ModelUnavailable

__all__ = [
    "ChatMessage",
    "message_text",
    "GenerationOptions",
    "ToolCall",
    "decode_arguments",
    "ModelChunk",
    "ModelProvider",
    "ModelUnavailable",
    "ModelTimeout",
    "ModelError",
]

ChatMessage = dict[str, Any]
"""``{"role": "system"|"user"|"assistant"|"tool", "content": str}``; an assistant
message that calls tools also has OpenAI-style ``tool_calls``, a tool message
has ``tool_call_id``."""


def message_text(message: ChatMessage) -> str:
    """All the text of a message: its content (or the text of its content parts)
    and the names and arguments of any tool calls, for counting tokens."""
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts; images add no text
        content = "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    parts = [content or ""]
    for call in message.get("tool_calls") or ():
        function = call.get("function", call)
        arguments = function.get("arguments", "")
        parts.append(str(function.get("name", "")))
        parts.append(arguments if isinstance(arguments, str) else json.dumps(arguments))
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int | None = None
    enable_thinking: bool = False
    stop: tuple[str, ...] = ()
    # OpenAI-style function specs: {"type": "function", "function": {name, description, parameters}}.
    tools: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call a model made, the one shape providers, the tool loop and the tool
    runner share: ``id`` is echoed by the ``tool`` message that answers it, ``arguments`` are
    always decoded to an object."""

    id: str
    name: str
    arguments: dict[str, Any]


def decode_arguments(text: str) -> dict[str, Any]:
    """A call's arguments sent as a JSON string; what is not a JSON object is kept as ``_raw``
    (the tool then reports the bad arguments to the model as its observation)."""
    try:
        arguments = json.loads(text) if text.strip() else {}
    except ValueError:
        return {"_raw": text}
    return arguments if isinstance(arguments, dict) else {"_raw": text}


@dataclass(slots=True)
class ModelChunk:
    """One piece of a streamed model answer.

    ``text`` is new answer text, ``reasoning`` new thinking text (never mixed
    into ``text``). The last chunk carries ``finish_reason`` ("stop" or
    "length") and the token counts from the model's own tokenizer.
    """

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # Complete tool calls the model made (in the last chunk of a streamed answer).
    tool_calls: list[ToolCall] = field(default_factory=list)


@runtime_checkable
class ModelProvider(Protocol):
    """A chat model. ``model_id`` is what ``usage.models[].model_id`` reports."""

    model_id: str
    context_length: int

    def stream(
        self, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[ModelChunk, None]: ...

    async def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens these messages take in the model's prompt (used to trim history)."""
        ...

    async def aclose(self) -> None: ...
