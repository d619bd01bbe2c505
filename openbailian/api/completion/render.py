"""Engine events → DashScope JSON and SSE.

Streaming: one ``event:result`` block per event. With ``incremental_output``
each ``text`` (and each thought) is only the new part; otherwise it is all so
far. ``finish_reason`` is the string ``"null"`` until the last event. Thoughts
(model reasoning, retrieval, plugin calls) are shown only with ``has_thoughts``
and stream before the answer; ``doc_references`` come with the event that
announces them and again with the last one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from openbailian.engine.events import (
    DocReference,
    Event,
    Finished,
    ModelUsage,
    ReasoningDelta,
    References,
    TextDelta,
    Thought,
)

__all__ = ["collect_response", "StreamRenderer", "sse_block", "sse_error_block", "KEEPALIVE"]

KEEPALIVE = b": keep-alive\n\n"


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _usage(models: list[ModelUsage]) -> dict[str, Any]:
    return {
        "models": [
            {"model_id": m.model_id, "input_tokens": m.input_tokens, "output_tokens": m.output_tokens}
            for m in models
        ]
    }


def _thought(thought: Thought) -> dict[str, Any]:
    return {k: v for k, v in asdict(thought).items() if v is not None and v != ""} | {
        "action_type": thought.action_type
    }


def _reasoning(text: str) -> dict[str, Any]:
    return {"action_type": "reasoning", "thought": text}


def _references(items: list[DocReference]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(item).items() if v is not None} for item in items]


def _payload(
    *,
    text: str,
    finish_reason: str,
    session_id: str,
    thoughts: list[dict[str, Any]] | None,
    references: list[dict[str, Any]] | None,
    usage: dict[str, Any] | None,
    request_id: str,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "output": {
            "text": text,
            "finish_reason": finish_reason,
            "session_id": session_id,
            "thoughts": thoughts or None,
            "doc_references": references or None,
        },
        "request_id": request_id,
    }
    if usage is not None:
        payload["usage"] = usage
    return payload


class _Thoughts:
    """The thoughts so far: consecutive reasoning pieces join into one entry."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add_reasoning(self, text: str) -> None:
        if self.items and self.items[-1]["action_type"] == "reasoning":
            self.items[-1]["thought"] += text
        else:
            self.items.append(_reasoning(text))

    def add(self, thought: Thought) -> None:
        self.items.append(_thought(thought))


async def collect_response(
    events: AsyncIterator[Event], *, request_id: str, has_thoughts: bool
) -> dict[str, Any]:
    """The whole answer as one JSON body (non-streaming calls)."""
    text: list[str] = []
    thoughts = _Thoughts()
    references: list[dict[str, Any]] | None = None
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            thoughts.add_reasoning(event.text)
        elif isinstance(event, Thought):
            thoughts.add(event)
        elif isinstance(event, References):
            references = _references(event.items)
        elif isinstance(event, Finished):
            return _payload(
                text="".join(text),
                finish_reason=event.finish_reason,
                session_id=event.session_id,
                thoughts=thoughts.items if has_thoughts else None,
                references=references,
                usage=_usage(event.usage),
                request_id=request_id,
            )
    raise RuntimeError("the run ended without finishing")


class StreamRenderer:
    def __init__(self, *, request_id: str, session_id: str, incremental: bool, has_thoughts: bool):
        self._request_id = request_id
        self._session_id = session_id
        self._incremental = incremental
        self._has_thoughts = has_thoughts
        self._text = ""
        self._thoughts = _Thoughts()
        self._references: list[dict[str, Any]] | None = None
        self._next_id = 1

    def render(self, event: Event) -> bytes | None:
        """The SSE block for one event, or None when the caller asked not to see it."""
        if isinstance(event, TextDelta):
            self._text += event.text
            return self._block(text=event.text if self._incremental else self._text)
        if isinstance(event, ReasoningDelta):
            self._thoughts.add_reasoning(event.text)
            return self._thought_block(_reasoning(event.text))
        if isinstance(event, Thought):
            self._thoughts.add(event)
            return self._thought_block(_thought(event))
        if isinstance(event, References):
            self._references = _references(event.items)
            return self._block(text="" if self._incremental else self._text, references=self._references)
        return self._block(
            text="" if self._incremental else self._text,
            finish_reason=event.finish_reason,
            thoughts=None if self._incremental else self._visible_thoughts(),
            references=self._references,
            usage=_usage(event.usage),
            session_id=event.session_id,
        )

    def error(self, status: int, code: str, message: str) -> bytes:
        block = sse_error_block(self._next_id, status, code, message, self._request_id)
        self._next_id += 1
        return block

    def _visible_thoughts(self) -> list[dict[str, Any]] | None:
        return self._thoughts.items if self._has_thoughts else None

    def _thought_block(self, new: dict[str, Any]) -> bytes | None:
        if not self._has_thoughts:
            return None
        thoughts = [new] if self._incremental else self._thoughts.items
        return self._block(text="" if self._incremental else self._text, thoughts=thoughts)

    def _block(
        self,
        *,
        text: str,
        finish_reason: str = "null",
        thoughts: list[dict[str, Any]] | None = None,
        references: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> bytes:
        payload = _payload(
            text=text,
            finish_reason=finish_reason,
            session_id=session_id or self._session_id,
            thoughts=thoughts,
            references=references,
            usage=usage,
            request_id=self._request_id,
        )
        block = sse_block(self._next_id, payload)
        self._next_id += 1
        return block


def sse_block(event_id: int, payload: dict[str, Any]) -> bytes:
    return f"id:{event_id}\nevent:result\n:HTTP_STATUS/200\ndata:{_dumps(payload)}\n\n".encode()


def sse_error_block(event_id: int, status: int, code: str, message: str, request_id: str) -> bytes:
    data = _dumps({"code": code, "message": message, "request_id": request_id})
    return f"id:{event_id}\nevent:error\n:HTTP_STATUS/{status}\nstatus:{status}\ndata:{data}\n\n".encode()
