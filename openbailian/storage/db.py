"""The database handle: an async engine for the server, migrations through Alembic."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from openbailian.storage.private import private_sqlite

__all__ = ["Database", "DEFAULT_POOL_SIZE", "alembic_config", "async_url", "sync_url", "migrate"]

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x6F62_6D69_6772  # "obmigr": any constant shared by every process
DEFAULT_POOL_SIZE = 15  # PostgreSQL connections one process keeps (OPENBAILIAN_DATABASE_POOL_SIZE)


def async_url(url: str) -> str:
    """The driver the server uses: aiosqlite for SQLite, psycopg (async) for PostgreSQL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend == "postgresql":
        return str(parsed.set(drivername="postgresql+psycopg"))
    return url


def sync_url(url: str) -> str:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite"))
    if backend == "postgresql":
        return str(parsed.set(drivername="postgresql+psycopg"))
    return url


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:  # a DBAPI connection: untyped
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _private_database_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        private_sqlite(Path(database))


def migrate(url: str, box: Any = None) -> None:
    """Bring the schema to the newest revision (idempotent). ``box``, a ``crypto.SecretBox``,
    is for the migrations that seal secrets written in plaintext before (``0009``)."""
    from alembic import command

    if _is_sqlite(url):
        _private_database_file(url)
    with _migration_lock(url):
        # "heads": features develop their tables on branches of the migration tree.
        config = alembic_config(url)
        config.attributes["secret_box"] = box
        command.upgrade(config, "heads")


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """Several processes started together on one database migrate it one at a time."""
    if _is_sqlite(url):
        database = make_url(url).database
        if not database or database == ":memory:":
            yield
            return
        with os.fdopen(os.open(f"{database}.migrate-lock", os.O_WRONLY | os.O_CREAT, 0o600), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield  # closing the file releases the lock
        return
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            # A session-level advisory lock, held by this connection until released.
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.is_sqlite = _is_sqlite(url)
        # PostgreSQL: ``pool_size`` connections kept open, none beyond (a caller past them waits
        # for one). SQLAlchemy's default, 5 kept and 10 more opened on demand, closes each extra
        # one when it comes back: under load a call in five or so paid for a new connection (a
        # server process forked, its statements prepared again), in the API and the database.
        pool = {} if self.is_sqlite else {"pool_size": pool_size, "max_overflow": 0}
        self.engine: AsyncEngine = create_async_engine(async_url(url), echo=echo, **pool)
        if self.is_sqlite:
            _private_database_file(url)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time; pooled connections racing for its lock
        # sleep in its busy handler. Queueing writers here is fairer and faster.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # The hot path's round trips on SQLite (see ``read``): plain sqlite3 connections
        # used from a few threads of our own, created on first use.
        self._sync_engine: Any = None
        self._threads: ThreadPoolExecutor | None = None
        self._echo = echo

    async def read(self, work: Callable[[Connection], T]) -> T:
        """One round trip for the call path: ``work`` runs Core statements on a sync
        ``Connection`` (no transaction kept open, nothing written).

        aiosqlite hands every cursor, execute, fetch and close to its thread and back, five
        hops for one SELECT; here all of ``work`` runs in one hop to a thread with a plain
        sqlite3 connection. On PostgreSQL it runs on the async driver in autocommit, so a
        SELECT is one message to the server (no BEGIN/ROLLBACK), and psycopg prepares
        statements it has seen a few times.
        """
        if self.is_sqlite:
            return await self._in_thread(work, write=False)
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await conn.run_sync(work)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Like ``read``, in one transaction committed at the end (rolled back on error);
        on SQLite queued behind the other writers of this process."""
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        assert self._write_lock is not None
        async with self._write_lock:
            return await self._in_thread(work, write=True)

    async def _in_thread(self, work: Callable[[Connection], T], *, write: bool) -> T:
        if self._threads is None:
            self._sync_engine = create_engine(sync_url(self.url), echo=self._echo)
            event.listen(self._sync_engine, "connect", _sqlite_pragmas)
            self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite")
        future = asyncio.get_running_loop().run_in_executor(self._threads, self._run, work, write)
        # Shielded: once handed to the thread the work finishes, and a caller cancelled
        # meanwhile waits for it (a write keeps the write lock until it is done).
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    def _run(self, work: Callable[[Connection], T], write: bool) -> T:
        if write:
            with self._sync_engine.begin() as conn:
                return work(conn)
        with self._sync_engine.connect() as conn:
            return work(conn)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed at the end (rolled back on error)."""
        if self._write_lock is None:
            async with self._sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """Like ``transaction``, but a bare connection for Core statements (no ORM session)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._sync_engine.dispose()
            self._threads = None
