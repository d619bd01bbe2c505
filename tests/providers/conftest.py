"""A scriptable fake OpenAI-compatible chat server on a real socket.

Tests queue replies with ``fake_openai.add(...)`` (the fields of :class:`Reply`);
each request to ``POST /v1/chat/completions`` takes the next one. Requests are recorded in
``fake_openai.requests``, each with how many events it was sent and whether the
client walked away from its answer stream.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support import serve_in_thread


@dataclass
class Reply:
    status: int = 200
    # SSE data payloads, sent in order (dicts as JSON, strings as they are).
    events: list[Any] = field(default_factory=list)
    # A whole JSON body instead of a stream (errors, non-streaming servers).
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the response starts
    hold: threading.Event | None = None  # no response at all until it is set
    event_delay: float = 0.0  # between events
    stall: float = 0.0  # after the events, before [DONE]
    endless: bool = False  # after the events, keep sending text until the client leaves
    done: bool = True  # end with data: [DONE]


_MORE = {
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"content": "more "}}],
}


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]
    events_sent: int = 0
    client_left: threading.Event = field(default_factory=threading.Event)


class FakeOpenAI:
    def __init__(self) -> None:
        self.url = ""
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        self.app = Starlette(
            routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])]
        )

    def reset(self) -> None:
        self.replies.clear()
        self.requests.clear()

    def add(self, **reply: Any) -> None:
        self.replies.append(Reply(**reply))

    async def _completions(self, request: Request) -> Response:
        record = Recorded(dict(request.headers), await request.json())
        self.requests.append(record)
        reply = (
            self.replies.pop(0) if self.replies else Reply(500, json={"error": "no reply scripted"})
        )
        if reply.hold is not None:
            await asyncio.to_thread(reply.hold.wait, 120)
        await asyncio.sleep(reply.delay)
        if reply.json is not None or reply.status != 200:
            return JSONResponse(reply.json, status_code=reply.status, headers=reply.headers)
        stream = self._sse(reply, record)
        return StreamingResponse(stream, media_type="text/event-stream", headers=reply.headers)

    async def _sse(self, reply: Reply, record: Recorded) -> AsyncIterator[str]:
        finished = False
        try:
            for event in reply.events:
                yield f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n"
                record.events_sent += 1
                await asyncio.sleep(reply.event_delay)
            while reply.endless:
                yield f"data: {json.dumps(_MORE)}\n\n"
                record.events_sent += 1
                await asyncio.sleep(0.01)
            await asyncio.sleep(reply.stall)
            if reply.done:
                yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                record.client_left.set()


@pytest.fixture
def unreachable_url() -> str:
    """A base URL on a local port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with serve_in_thread(fake.app) as url:
        fake.url = f"{url}/v1"
        yield fake


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    _fake_openai_server.reset()
    yield _fake_openai_server
    _fake_openai_server.reset()
