"""Counting app calls as the caller saw them: ``@counts_usage`` on the completion route.

A call is counted once it is finished, from what the route answered: the JSON body's or the
last SSE block's ``usage`` (a call, with its tokens), or an error (raised before anything was
sent, or the stream's error block). Only calls of an app the caller's workspace owns are
counted: a missing or another workspace's app, a bad key or a rate-limited key never reach a
counter. A stream the client leaves counts as a call without tokens. The count is written
before the last bytes go out, so a caller who has the answer can see it counted.

A call whose turn is stored is counted by the turn's own write (the meter hands the engine a
``UsageSlip`` through ``request.state.usage_slip``, which the route puts in the ``Call``): no
round trip of its own. The meter writes only the others — failures, and a stream left before
the engine stored anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any

import anyio
from starlette.responses import Response, StreamingResponse

from openbailian.engine.call import UsageSlip
from openbailian.services.usage import CallOutcome, record_call
from openbailian.storage.db import Database

__all__ = ["counts_usage"]

logger = logging.getLogger("openbailian.usage")

Handler = Callable[..., Awaitable[Any]]


def counts_usage(handler: Handler) -> Handler:
    """Wrap a route taking ``app_id``, ``caller`` and ``runtime`` keyword arguments."""

    @wraps(handler)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        meter = _Meter.for_call(kwargs["runtime"].db, kwargs["caller"], kwargs["app_id"])
        if meter is not None:
            kwargs["request"].state.usage_slip = meter.slip
        try:
            response = await handler(*args, **kwargs)
        except Exception:
            if meter is not None:
                await meter.finish(ok=False)
            raise
        if meter is None:
            return response
        if isinstance(response, StreamingResponse):
            response.body_iterator = meter.watch(response.body_iterator)
        elif isinstance(response, Response):
            await meter.finish_with(bytes(response.body))
        return response

    return counted


class _Meter:
    def __init__(self, db: Database, workspace_id: str, app_id: str) -> None:
        self._db = db
        self._workspace_id = workspace_id
        self._app_id = app_id
        self._done = False
        self.slip = UsageSlip()  # counted: the turn's write counted the call

    @classmethod
    def for_call(cls, db: Database, caller: Any, app_id: str) -> _Meter | None:
        """A meter when the app is the caller's workspace's (read with the key), else None."""
        stamp = getattr(caller, "app", None)
        if stamp is None or stamp.workspace_id != caller.workspace_id:
            return None
        return cls(db, caller.workspace_id, app_id)

    async def finish(self, *, ok: bool, input_tokens: int = 0, output_tokens: int = 0) -> None:
        if not self.pending:
            return
        self._done = True
        outcome = CallOutcome(self._workspace_id, self._app_id, ok, input_tokens, output_tokens)
        try:
            with anyio.CancelScope(shield=True):  # a client leaving must not lose the count
                await record_call(self._db, outcome)
        except Exception:  # a lost count must not fail the call it counts
            logger.exception("could not count a call of app %s", self._app_id)

    @property
    def pending(self) -> bool:
        """Not counted yet, by this meter or by the turn's write."""
        return not (self._done or self.slip.counted)

    async def finish_with(self, body: bytes) -> None:
        """A JSON answer: a call with the tokens of its ``usage``."""
        if self.pending:  # (the body is read only when the turn's write did not count it)
            await self.finish(ok=True, **_tokens(_json(body)))

    async def watch(self, blocks: AsyncIterable[Any]) -> AsyncIterator[Any]:
        try:
            async for block in blocks:
                if isinstance(block, bytes):
                    await self._see(block)
                yield block
        finally:
            await self.finish(ok=True)  # the client left before the end: a call, no tokens known

    async def _see(self, block: bytes) -> None:
        if not self.pending:
            return
        if b"\nevent:error\n" in block:
            await self.finish(ok=False)
        elif b'"usage":' in block:  # only the last result block carries usage
            await self.finish(ok=True, **_tokens(_json(_data_line(block))))


def _data_line(block: bytes) -> bytes:
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:]
    return b""


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tokens(payload: dict[str, Any]) -> dict[str, int]:
    models = (payload.get("usage") or {}).get("models") or []
    return {
        "input_tokens": sum(int(m.get("input_tokens") or 0) for m in models),
        "output_tokens": sum(int(m.get("output_tokens") or 0) for m in models),
    }
