"""uvicorn's httptools protocol, writing an answer's head and body in one ``write``.

uvicorn writes the status line and headers when the app sends ``http.response.start``, and
the body with the next message: two TCP segments, so the client wakes for the head and
again for the body (httpx parses the head, then waits for the rest), and the server makes
two system calls. An answer whose head declares a ``Content-Length`` has its body right
behind it (a JSON answer, an error), so its head is held until the body's first write and
sent with it. Streams (chunked: SSE keeps its head-first behaviour), HEAD answers and
anything else are written as uvicorn writes them.

``openbailian serve`` runs uvicorn with :data:`HTTP_PROTOCOL`.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HTTP_PROTOCOL", "OneWriteHttpToolsProtocol"]

_HEAD_START = b"HTTP/1.1 "
_LENGTH = b"\r\ncontent-length: "  # uvicorn writes header names in lower case


class _HeadWithBody:
    """One request's transport: its first write, a head with a Content-Length, is held
    and written with the next one (or on close); every other write goes out as it comes."""

    __slots__ = ("_transport", "_head", "_first")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if data.startswith(_HEAD_START) and _LENGTH in data:
                self._head = data
                return
        elif self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before and self.scope["method"] != "HEAD":
            # (a HEAD answer declares its length but writes no body: its head is not held)
            cycle.transport = cast(asyncio.Transport, _HeadWithBody(cycle.transport))


HTTP_PROTOCOL: type[asyncio.Protocol] = OneWriteHttpToolsProtocol
