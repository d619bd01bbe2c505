"""Engine events → DashScope JSON and SSE.

Streaming: one ``event:result`` block per event. With ``incremental_output``
each ``text`` (and each thought) is only the new part; otherwise it is all so
far. ``finish_reason`` is the string ``"null"`` until the last event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from openbailian.engine.events import Event, Finished, ModelUsage, ReasoningDelta, TextDelta

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


def _reasoning(thought: str) -> list[dict[str, str]]:
    return [{"action_type": "reasoning", "thought": thought}]


def _payload(
    *,
    text: str,
    finish_reason: str,
    session_id: str,
    thoughts: list[dict[str, str]] | None,
    usage: dict[str, Any] | None,
    request_id: str,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "output": {
            "text": text,
            "finish_reason": finish_reason,
            "session_id": session_id,
            "thoughts": thoughts,
            "doc_references": None,
        },
        "request_id": request_id,
    }
    if usage is not None:
        payload["usage"] = usage
    return payload


async def collect_response(
    events: AsyncIterator[Event], *, request_id: str, has_thoughts: bool
) -> dict[str, Any]:
    """The whole answer as one JSON body (non-streaming calls)."""
    text: list[str] = []
    reasoning: list[str] = []
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, Finished):
            thoughts = _reasoning("".join(reasoning)) if has_thoughts and reasoning else None
            return _payload(
                text="".join(text),
                finish_reason=event.finish_reason,
                session_id=event.session_id,
                thoughts=thoughts,
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
        self._reasoning = ""
        self._next_id = 1

    def render(self, event: Event) -> bytes | None:
        """The SSE block for one event, or None when the caller asked not to see it."""
        if isinstance(event, TextDelta):
            self._text += event.text
            shown = event.text if self._incremental else self._text
            return self._block(text=shown, finish_reason="null", thoughts=None)
        if isinstance(event, ReasoningDelta):
            self._reasoning += event.text
            if not self._has_thoughts:
                return None
            shown = event.text if self._incremental else self._reasoning
            return self._block(text="" if self._incremental else self._text, finish_reason="null", thoughts=_reasoning(shown))
        thoughts = None
        if self._has_thoughts and self._reasoning and not self._incremental:
            thoughts = _reasoning(self._reasoning)
        return self._block(
            text="" if self._incremental else self._text,
            finish_reason=event.finish_reason,
            thoughts=thoughts,
            usage=_usage(event.usage),
            session_id=event.session_id,
        )

    def error(self, status: int, code: str, message: str) -> bytes:
        block = sse_error_block(self._next_id, status, code, message, self._request_id)
        self._next_id += 1
        return block

    def _block(
        self,
        *,
        text: str,
        finish_reason: str,
        thoughts: list[dict[str, str]] | None,
        usage: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> bytes:
        payload = _payload(
            text=text,
            finish_reason=finish_reason,
            session_id=session_id or self._session_id,
            thoughts=thoughts,
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
