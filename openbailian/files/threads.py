"""The threads a call's own file work runs on (the safety check and parse of a file the call
brings by URL, a session image read for a vision model): never the event loop's default
executor, where ingestion keeps a thread per document parsing or waiting on the model, so a
call with files answers while documents are being ingested."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from openbailian.cores import OwnThreads

__all__ = ["run_for_call"]

T = TypeVar("T")

_CALL_THREADS = OwnThreads("call-files")


async def run_for_call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` on the calls' file threads."""
    return await _CALL_THREADS.run(function, *args, **kwargs)
