"""The ``local`` provider: a GGUF model run in-process by xllamacpp (llama.cpp).

xllamacpp's ``Server`` is llama.cpp's own server: thread-safe, with
``n_parallel`` slots and continuous batching. A chat call blocks the thread
that makes it and hands every streamed chunk to a callback; the callback
returning True stops decoding, which is how a cancelled request really stops
the model. Calls run on a private thread pool and their chunks cross into
asyncio through a queue.

The server also listens on a loopback port of its own; token counts for
history trimming come from its ``/apply-template`` and ``/tokenize``
endpoints, i.e. from the model's real chat template and tokenizer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from openbailian.cores import usable_cores
from openbailian.providers.base import (
    ChatMessage,
    GenerationOptions,
    ModelChunk,
    ModelError,
    ModelUnavailable,
)
from openbailian.providers.chat_chunks import ChatChunkDecoder
from openbailian.providers.toolcalls import ToolCallFilter

__all__ = ["LocalProvider", "build_server"]

_DONE = object()


class LocalProvider:
    def __init__(
        self,
        path: Path,
        *,
        model_id: str,
        n_ctx: int = 4096,
        n_parallel: int = 4,
        n_threads: int | None = None,
        verbosity: int = 0,
    ) -> None:
        if not path.exists():
            raise ModelUnavailable(f"Model file {path} does not exist")
        self.model_id = model_id
        self.context_length = n_ctx
        self._server = build_server(path, n_ctx, n_parallel, n_threads, verbosity)
        self._address = self._server.listening_address
        self._http = httpx.AsyncClient(base_url=self._address, timeout=30.0)
        self._pool = ThreadPoolExecutor(max_workers=n_parallel * 2, thread_name_prefix="llama")

    async def count_tokens(self, messages: list[ChatMessage]) -> int:
        try:
            template = await self._http.post("/apply-template", json={"messages": messages})
            template.raise_for_status()
            tokens = await self._http.post(
                "/tokenize", json={"content": template.json()["prompt"], "add_special": False}
            )
            tokens.raise_for_status()
        except httpx.HTTPError as error:
            raise ModelUnavailable(f"The local model could not count tokens: {error}") from error
        return len(tokens.json()["tokens"])

    async def stream(
        self, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[ModelChunk, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return stop.is_set()

        def generate() -> None:
            try:
                self._server.handle_chat_completions(_request(messages, options), on_chunk)
            except Exception as error:  # reported to the consumer, never lost in the thread
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        worker = loop.run_in_executor(self._pool, generate)
        decoder = ChatChunkDecoder()
        # Small models often write their tool calls as text rather than in the
        # template's format that llama.cpp parses; read them from the text too.
        text_calls = ToolCallFilter([t["function"]["name"] for t in options.tools])
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise ModelError(f"The local model failed: {item}")
                _raise_if_error(item)
                piece = decoder.feed(item)
                if piece is not None:
                    piece.text = text_calls.feed(piece.text)
                    if piece.text or piece.reasoning:
                        yield piece
            final = decoder.finish()
            rest, calls = text_calls.finish()
            final.text += rest
            if calls and not final.tool_calls:
                final.tool_calls, final.finish_reason = calls, "tool_calls"
            yield final
        finally:
            # Also on cancellation: the callback's next answer stops decoding.
            stop.set()
            await asyncio.shield(worker)

    async def aclose(self) -> None:
        await self._http.aclose()
        self._pool.shutdown(wait=True)
        del self._server


def build_server(
    path: Path, n_ctx: int, n_parallel: int, n_threads: int | None, verbosity: int = 0
) -> Any:
    """xllamacpp's llama.cpp server on a GGUF file (the benchmark builds the same one)."""
    import xllamacpp

    threads = n_threads or usable_cores()
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    # llama.cpp shares n_ctx among the slots; give each slot the full window.
    params.n_ctx = n_ctx * n_parallel
    params.n_parallel = n_parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    params.port = 0  # a free loopback port, for /tokenize
    params.verbosity = verbosity
    return xllamacpp.Server(params)


def _request(messages: list[ChatMessage], options: GenerationOptions) -> dict[str, Any]:
    request: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "chat_template_kwargs": {"enable_thinking": options.enable_thinking},
    }
    for name in ("temperature", "top_p", "top_k", "seed", "max_tokens"):
        value = getattr(options, name)
        if value is not None:
            request[name] = value
    if options.stop:
        request["stop"] = list(options.stop)
    if options.tools:
        request["tools"] = list(options.tools)
    return request


def _raise_if_error(chunk: dict[str, Any]) -> None:
    error = chunk.get("error") if "choices" not in chunk else None
    if error is None and "code" in chunk and "message" in chunk and "choices" not in chunk:
        error = chunk
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise ModelError(f"The local model refused the request: {message}")
