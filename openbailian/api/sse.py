"""A streaming response that notices a client leaving and closes its source at once.

Starlette's ``StreamingResponse`` (ASGI spec 2.4 and later) learns of a
disconnect only at its next write, and leaves the body iterator suspended
for the garbage collector. For a model answer that would mean tokens
generated for nobody and a cut answer stored at some random later time, so
this response listens for ``http.disconnect`` while streaming, cancels the
stream the moment it comes, and always closes the iterator before returning.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["EventStreamResponse"]


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"

    def __init__(
        self, content: AsyncGenerator[bytes, None], *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(content, headers=headers)
        self._source = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away mid-write
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                # The body as wrapped since (the usage meter watches it) first, then the source.
                if isinstance(self.body_iterator, AsyncGenerator):
                    await self.body_iterator.aclose()
                await self._source.aclose()
        if self.background is not None:
            await self.background()
