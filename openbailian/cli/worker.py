"""``openbailian worker``: the background work without an HTTP server.

Knowledge ingestion, session-file processing and the expiry sweeper, on the
database (and object store) of the settings. Work is claimed in the database
with leases, so any number of workers and ``serve`` processes can share it; run
the API with ``serve --no-background`` to leave all of it to the workers.
SIGTERM or SIGINT stops it cleanly: the work in hand is abandoned to its lease
(another process resumes it) and the database is closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import typer

from openbailian.config import Settings
from openbailian.runtime import Runtime

__all__ = ["worker"]

logger = logging.getLogger("openbailian.worker")


def worker(log_level: str = typer.Option("info", help="Log level (debug, info, warning, error).")) -> None:
    """Run ingestion, session-file processing and expiry without serving HTTP (stop with SIGTERM)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_worker(Settings()))


async def run_worker(settings: Settings) -> None:
    runtime = Runtime.build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runtime.knowledge.ingestor.listeners.append(
        lambda document_id, status: logger.info("knowledge document %s: %s", document_id, status)
    )
    try:
        await runtime.start_worker()
        logger.info("worker started (database %s)", _shown(settings.resolved_database_url))
        await stop.wait()
        logger.info("worker stopping")
    finally:
        await runtime.aclose()
        logger.info("worker stopped")


def _shown(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
