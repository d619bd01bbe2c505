"""A streaming response that notices a client leaving and closes its source at once, and
fills long silences with comments.

Starlette's ``StreamingResponse`` (ASGI spec 2.4 and later) learns of a
disconnect only at its next write, and leaves the body iterator suspended
for the garbage collector. For a model answer that would mean tokens
generated for nobody and a cut answer stored at some random later time, so
this response listens for ``http.disconnect`` while streaming, cancels the
stream the moment it comes, and always closes the iterator before returning.

The same listener sends ``keepalive_block`` (an SSE comment) whenever ``keepalive`` seconds
pass without a write, so proxies do not close a stream whose model is thinking. It is one
task per stream, stopped by a plain task cancel when the stream ends: per event the stream
costs nothing more than its write (an anyio cancel scope's ``cancel`` formats the task's
repr, and a task per event to wait with a timeout cost more than rendering the event).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

__all__ = ["EventStreamResponse", "KEEPALIVE_COMMENT"]

KEEPALIVE_COMMENT = b": keep-alive\n\n"


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        headers: Mapping[str, str] | None = None,
        keepalive: float | None = None,
        keepalive_block: bytes = KEEPALIVE_COMMENT,
    ) -> None:
        super().__init__(content, headers=headers)
        self._source = content
        self._keepalive = keepalive
        self._keepalive_block = keepalive_block
        self._last_write = 0.0  # loop time of the last write (0: the headers are not sent yet)
        self._complete = False  # the last body message is sent
        self._writing = asyncio.Lock()  # the listener's comments never cut into a block

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()

        async def write(message: Message) -> None:
            async with self._writing:
                if self._complete:  # a comment that waited for the last block: nothing follows it
                    return
                await send(message)
                self._last_write = loop.time()
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    self._complete = True

        try:
            with anyio.CancelScope() as streaming:
                listener = loop.create_task(self._listen(receive, write, streaming))
                try:
                    await self.stream_response(write)
                except OSError:  # the client went away mid-write
                    pass
                finally:
                    listener.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                # The body as wrapped since (the usage meter watches it) first, then the source.
                if isinstance(self.body_iterator, AsyncGenerator):
                    await self.body_iterator.aclose()
                await self._source.aclose()
        if self.background is not None:
            await self.background()

    async def _listen(self, receive: Receive, write: Send, streaming: anyio.CancelScope) -> None:
        """Until the client leaves (then cancel ``streaming``), a comment after each silence."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                wait = None
                if self._keepalive is not None and self._last_write:
                    wait = self._last_write + self._keepalive - loop.time()
                    if wait <= 0:
                        await write({"type": "http.response.body", "body": self._keepalive_block, "more_body": True})
                        continue
                try:
                    async with asyncio.timeout(wait):
                        message = await receive()
                except TimeoutError:
                    continue
                if message["type"] == "http.disconnect":
                    if not self._complete:  # (a server also says so once the response is done)
                        streaming.cancel()
                    return
        except OSError:  # a comment written as the client left: the stream notices too
            return
