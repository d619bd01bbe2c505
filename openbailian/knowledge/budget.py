"""Work on hostile input in a child process that can be stopped: a time and a memory budget.

Parsing a document runs arbitrary third-party code (zip, XML, PDF decoders) on bytes
an outsider chose; a thread in the server cannot be stopped and shares its memory.
Here the work runs in a fresh child process (``forkserver``: forked from a small clean
server process, never from the threaded server itself) whose address space and CPU time
are capped with ``setrlimit`` before the work starts; the parent waits without blocking
its event loop, kills the child (SIGKILL) when the wall-clock budget runs out or when the
awaiting task is cancelled, and turns every way the child can end into a result or an
:class:`OverBudget` whose message says which budget was exceeded.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import logging
import multiprocessing
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

from openbailian.errors import ParseError
from openbailian.knowledge.chunk import Chunk, ChunkRule, chunk_by_characters, chunk_document, chunk_records
from openbailian.knowledge.parse import STANDARD, Parsers, parse_table

__all__ = [
    "Budget", "LINEAR_MAX_BYTES", "LINEAR_TYPES", "OverBudget", "Prepared", "Stopped", "in_child", "parse_here",
    "prepare", "run_in_child",
]

logger = logging.getLogger("openbailian.knowledge")

T = TypeVar("T")
# Imported once by the fork server, so a child starts parsing without importing anything.
PRELOAD = ["openbailian.knowledge.budget", "docx", "pptx", "openpyxl", "pypdf", "bs4"]

_MEMORY_WORDS = ("memory allocation failed", "out of memory", "cannot allocate memory", "memoryerror")


@dataclass(frozen=True, slots=True)
class Budget:
    """What one piece of work may use: wall-clock seconds (also its CPU seconds) and MiB of
    address space beyond what its process starts with (``0``: no cap)."""

    seconds: float
    memory_mb: int = 0


class OverBudget(ParseError):
    """The work was stopped: it ran out of time or memory, or its process died."""


@dataclass(slots=True)
class Prepared:
    """A parsed and chunked document, ready to embed."""

    chunks: list[Chunk]
    pages: int


def prepare(
    path: Path, name: str, kind: str, rule: ChunkRule | None = None, parsers: Parsers = STANDARD
) -> Prepared:
    """Parse and chunk the document at ``path`` (``name`` gives its type): the work a child does."""
    if not path.exists():
        raise ParseError("The uploaded file is missing from storage")
    if kind == "structured":
        table = parse_table(path, name=name)
        return Prepared(chunk_records(table), pages=1)
    document = parsers.parse(path, name=name)
    chunks = chunk_by_characters(document, rule) if rule else chunk_document(document)
    if not chunks:
        raise ParseError("The document contains no text")
    return Prepared(chunks, pages=document.pages)


_context: Any = None


def _mp_context() -> Any:
    global _context
    if _context is None:
        _keep_main_out_of_children()
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        _context = context
    return _context


def in_child(parsers: Parsers, file_type: str, kind: str) -> bool:
    """Whether a child can parse this type as ``parsers`` would: a child has the documented
    parsers (``STANDARD``); others (session files' OCR and speech, which use models loaded in
    the server) are parsed in the server process."""
    ext = file_type.lower()
    return kind == "structured" or (ext in STANDARD.by_type and parsers.by_type.get(ext) is STANDARD.by_type[ext])


# Small files whose parse is a decode and a few linear scans (no third-party decoder, no
# backtracking regex): parsed by the process that ingests them, in a thread, with no child.
LINEAR_TYPES = frozenset({".txt", ".md", ".markdown"})
LINEAR_MAX_BYTES = 256 * 1024  # its chunks and token spans then take a few MB at most


def parse_here(file_type: str, kind: str, size: int, rule: ChunkRule | None) -> bool:
    """Whether a document's parse can neither take long nor much memory, so that a child (its
    start, preloads and pickling: most of a small document's parse) buys nothing: a plain-text
    or Markdown file of at most ``LINEAR_MAX_BYTES``, cut by the default chunker or by a rule
    whose overlap leaves each chunk at least a quarter new (at most ~4 copies of the text)."""
    if kind == "structured" or file_type.lower() not in LINEAR_TYPES or size > LINEAR_MAX_BYTES:
        return False
    return rule is None or 4 * (rule.size - rule.overlap) >= rule.size


class Stopped(Exception):
    """The work was stopped from outside (its ``stop`` event was set); its child is gone."""


async def run_in_child(
    work: Callable[..., T],
    *args: Any,
    budget: Budget,
    started: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> T:
    """``work(*args)`` in a child process within ``budget``; ``work`` and its arguments and
    result must pickle. A :class:`ParseError` raised by ``work`` is raised here with its
    reason; ``started`` gets the child's pid. Setting ``stop`` (or cancelling the awaiting
    task) kills the child; then :class:`Stopped` is raised."""
    parent_end, child_end = _mp_context().Pipe(duplex=False)
    process = _mp_context().Process(
        target=_child_main, args=(child_end, budget, work, args), name="openbailian-parse", daemon=True
    )
    began = time.monotonic()
    await asyncio.to_thread(process.start)
    child_end.close()
    logger.debug("parsing child %s started in %.2f s", process.pid, time.monotonic() - began)
    if started is not None and process.pid is not None:
        started(process.pid)
    stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        outcome = await _outcome(parent_end, process, stopping, budget)
        if outcome is None:
            await asyncio.to_thread(process.join, 5)
            raise OverBudget(_death_reason(process.exitcode, budget))
        kind, value = outcome
        if kind == "ok":
            return value  # type: ignore[no-any-return]  # what work returned, unpickled
        if kind == "memory":
            raise OverBudget(f"Parsing needed more than its memory budget of {budget.memory_mb} MiB and was stopped")
        raise ParseError(value)
    finally:
        if stopping is not None:
            stopping.cancel()
        _kill(process)
        parent_end.close()


async def _outcome(
    connection: Connection, process: BaseProcess, stopping: asyncio.Future[Any] | None, budget: Budget
) -> tuple[str, Any] | None:
    """The child's message once the pipe is readable or the child has ended (None: it ended without one)."""
    readable = asyncio.ensure_future(_readable(connection.fileno(), process.sentinel))
    waits = [readable] if stopping is None else [readable, stopping]
    try:
        done, _ = await asyncio.wait(waits, timeout=budget.seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        readable.cancel()
        await asyncio.gather(readable, return_exceptions=True)  # its readers are removed now
    if not done:
        raise OverBudget(f"Parsing took longer than its budget of {budget.seconds:g} s and was stopped")
    if readable not in done:
        raise Stopped()
    # uvloop leaves a descriptor it watched non-blocking: a message bigger than the pipe's buffer
    # would then fail half-read (EAGAIN) and look like a child that died without a word.
    os.set_blocking(connection.fileno(), True)
    return await asyncio.to_thread(_receive, connection)


async def _readable(*fds: int) -> None:
    """Until one of these file descriptors is readable (data, end of file, or process exit)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    for fd in fds:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        for fd in fds:
            loop.remove_reader(fd)


def _receive(connection: Connection) -> tuple[str, Any] | None:
    """The child's message, or None when it died without sending one."""
    try:
        if not connection.poll():
            return None
        return connection.recv()  # type: ignore[no-any-return]  # a pipe's recv() unpickles to Any
    except (EOFError, OSError):
        return None


def _kill(process: BaseProcess) -> None:
    if process.is_alive():
        process.kill()
    process.join(5)
    process.close()


def _death_reason(exitcode: int | None, budget: Budget) -> str:
    if exitcode == -signal.SIGXCPU:
        return f"Parsing used more than its CPU budget of {budget.seconds:g} s and was stopped"
    if exitcode in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
        # A C library that cannot allocate usually aborts or crashes rather than failing cleanly.
        memory = f" (its memory budget is {budget.memory_mb} MiB)" if budget.memory_mb else ""
        return f"The parser crashed on this document{memory}"
    return f"The parser stopped unexpectedly (exit code {exitcode})"


def _keep_main_out_of_children() -> None:
    """Children must not run the main script again before their work.

    multiprocessing hands every child the path of the parent's main script, and a child runs
    it (as ``__mp_main__``) unless that script was preloaded by the fork server, which its
    ``"__main__"`` preload does not do on Python 3.11 (it looks for a ``main_path`` key that
    the preparation data calls ``init_main_from_path``). For ``openbailian`` (the console
    script: the whole CLI and server) that cost seconds of imports per parsed document. A
    main module whose spec is named ``"__main__"`` is passed by that name instead, which a
    child skips. Our children need nothing from the main script: their work is importable.
    """
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None:
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)


# ---------------------------------------------------------------- in the child


def _child_main(connection: Connection, budget: Budget, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
    start = _address_space()
    _limit(budget)
    try:
        result = work(*args)
    except BaseException as error:  # noqa: BLE001 - everything is reported to the parent
        # A C library that cannot allocate often says something vague ("unknown error"):
        # having come near the cap is the surer sign.
        near_cap = budget.memory_mb > 0 and _peak_address_space() - start >= budget.memory_mb * 1024 * 1024 // 2
        _send(connection, ("memory", "") if near_cap or _out_of_memory(error) else ("error", _reason(error)))
    else:
        _send(connection, ("ok", result))
    connection.close()


def _limit(budget: Budget) -> None:
    if budget.memory_mb > 0:  # beyond what the child starts with (the modules it has loaded)
        cap = _address_space() + budget.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    # A backstop for a parent that cannot stop the child: a second past the wall-clock budget,
    # so a single-threaded parse always meets the parent's clock first (the child's start-up
    # CPU counts here, not there) and the reason names the budget the user set.
    cpu = max(1, int(budget.seconds + 0.999)) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL


def _address_space() -> int:
    """This process's virtual memory size in bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


def _peak_address_space() -> int:
    """The most virtual memory this process has had, in bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _send(connection: Connection, message: tuple[str, Any]) -> None:
    try:
        connection.send(message)
    except MemoryError:
        connection.send(("memory", ""))


def _out_of_memory(error: BaseException | None) -> bool:
    """MemoryError anywhere in the chain, or a library's own words for a failed allocation
    (lxml says "Memory allocation failed"; parsers re-raise such errors as ParseError)."""
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, MemoryError) or any(word in str(error).lower() for word in _MEMORY_WORDS):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _reason(error: BaseException) -> str:
    if isinstance(error, ParseError):
        return error.reason
    logger.error("parsing failed in the child process", exc_info=error)
    return f"Unexpected error while parsing ({type(error).__name__})"
