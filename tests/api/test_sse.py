"""EventStreamResponse: when the client leaves, the body and its source are closed before the
response returns — also when the body was wrapped after the response was made (the usage
meter watches the completion route's stream that way)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import anyio

from openbailian.api.sse import EventStreamResponse


async def test_a_client_leaving_closes_the_wrapped_body_and_its_source() -> None:
    closed: list[str] = []
    first_block_sent = anyio.Event()

    async def source() -> AsyncGenerator[bytes, None]:
        try:
            yield b"data: 1\n\n"
            yield b"data: 2\n\n"
        finally:
            closed.append("source")

    async def wrapper(blocks: Any) -> AsyncGenerator[bytes, None]:
        try:
            async for block in blocks:
                yield block
        finally:
            closed.append("wrapper")

    response = EventStreamResponse(source())
    response.body_iterator = wrapper(response.body_iterator)

    async def receive() -> dict[str, Any]:
        await first_block_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            first_block_sent.set()
            await anyio.sleep_forever()  # a slow client: the body waits at its yield

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "POST", "path": "/"}
    await response(scope, receive, send)
    assert sorted(closed) == ["source", "wrapper"]  # both, before the response returned
