"""The threads a call's own file work runs on (the safety check and parse of a file the call
brings by URL, a session image read for a vision model): never the event loop's default
executor, where ingestion keeps a thread per document parsing or waiting on the model, so a
call with files answers while documents are being ingested."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["run_for_call"]

T = TypeVar("T")

_THREADS: list[ThreadPoolExecutor] = []
_THREADS_LOCK = threading.Lock()


def _call_threads() -> ThreadPoolExecutor:
    """The process's threads for calls' file work, made on first use."""
    with _THREADS_LOCK:
        if not _THREADS:
            usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            _THREADS.append(ThreadPoolExecutor(max_workers=max(4, usable + 2), thread_name_prefix="call-files"))
        return _THREADS[0]


async def run_for_call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` on the calls' file threads."""
    work = functools.partial(function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_call_threads(), work)
