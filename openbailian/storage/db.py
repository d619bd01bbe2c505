"""The database handle: an async engine for the server, migrations through Alembic."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
from alembic.config import Config
from sqlalchemy import Connection, Dialect, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool, SingletonThreadPool
from sqlalchemy.sql.expression import ClauseElement

from openbailian.storage.private import private_sqlite

__all__ = ["Database", "DEFAULT_POOL_SIZE", "Prepared", "alembic_config", "async_url", "sync_url", "migrate"]

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x6F62_6D69_6772  # "obmigr": any constant shared by every process
DEFAULT_POOL_SIZE = 15  # PostgreSQL connections one process keeps (OPENBAILIAN_DATABASE_POOL_SIZE)
# One quick write in this many goes through a thread's connection, which checkpoints the WAL
# when it has grown past SQLite's 1000 pages (the event loop's own connection never does).
CHECKPOINT_EVERY = 64


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


def _on_loop_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The event loop's own connection never waits: a lock it meets sends the work to a
    thread that may wait (``Database.read``/``write``, ``quick``), and it leaves checkpoints
    (an fsync of the whole WAL) to the threads' connections."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _is_busy(error: BaseException) -> bool:
    """SQLite's SQLITE_BUSY (a lock held by another connection), raw or wrapped by SQLAlchemy."""
    found = getattr(error, "orig", error)
    return isinstance(found, sqlite3.OperationalError) and getattr(found, "sqlite_errorname", "").startswith("SQLITE_BUSY")


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



class _Compiled:
    """One statement in one dialect's words: its SQL, how to bind a call's values, and how
    to read its rows, all worked out once."""

    __slots__ = ("sql", "_compiled", "_order", "_binds", "_columns", "_dialect", "_results", "_row")

    def __init__(self, statement: ClauseElement, dialect: Dialect, columns: Sequence[str] | None) -> None:
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(columns) if columns else None)
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise ValueError("a prepared INSERT/UPDATE names every column it sets (no Python-side defaults)")
        if any(bind.expanding for bind in compiled.bind_names):
            raise ValueError("a prepared statement takes no expanding IN parameters")
        self.sql: str = compiled.string
        self._compiled = compiled
        self._order: list[str] | None = list(compiled.positiontup) if dialect.positional else None
        self._binds = {
            name: processor
            for bind, name in compiled.bind_names.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        self._columns: list[Any] = list(getattr(statement, "selected_columns", None) or ())
        self._dialect = dialect
        self._results: list[Any] | None = None  # the columns' processors, known at the first rows
        names = [getattr(column, "key", None) or f"_{i}" for i, column in enumerate(self._columns)]
        row_type: Any = namedtuple("Row", names, rename=True) if names else None  # noqa: PYI024
        self._row: Callable[[Any], Any] = row_type._make if row_type is not None else tuple

    def bind(self, params: Mapping[str, Any]) -> Any:
        values = self._compiled.construct_params(params)
        for name, processor in self._binds.items():
            values[name] = processor(values[name])
        return values if self._order is None else [values[name] for name in self._order]

    def rows(self, raw: Sequence[Any], description: Sequence[Any]) -> list[Any]:
        """The rows as named tuples (``row.column`` or ``row[i]``), values as their types read them."""
        if self._results is None:  # a driver's processors may depend on the type it reports
            dialect = self._dialect
            self._results = [
                column.type.dialect_impl(dialect).result_processor(dialect, found[1])
                for column, found in zip(self._columns, description)
            ]
        make, processors = self._row, self._results
        if not any(processors):
            return [make(row) for row in raw]
        return [
            make([value if process is None else process(value) for process, value in zip(processors, row)])
            for row in raw
        ]


class Prepared:
    """A Core statement compiled once per dialect and run on the driver's own cursor.

    For the call path's statements (a key check, a session's turn): SQLAlchemy's
    ``Connection.execute`` spends more Python per statement (cache key, compiled-cache
    lookup, execution context, result object) than SQLite spends running it. Values are
    bound and rows read with the column types' own processors, so what is stored and read
    is exactly what ``execute`` would store and read. An INSERT names its ``columns`` and
    is given every one of them (column defaults computed in Python are not applied).
    """

    def __init__(self, statement: ClauseElement, *, columns: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._columns = tuple(columns) if columns else None
        self._by_dialect: dict[str, _Compiled] = {}

    def compiled_for(self, dialect: Dialect) -> _Compiled:
        """Its SQL in ``dialect``'s words, with how to bind values and read rows (for a driver's own cursor)."""
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            compiled = self._by_dialect[dialect.name] = _Compiled(self.statement, dialect, self._columns)
        return compiled

    def all(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of the statement run with ``params``."""
        compiled = self.compiled_for(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(compiled.sql, compiled.bind(params or {}))
            return compiled.rows(cursor.fetchall(), cursor.description) if cursor.description else []
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(conn, params)
        return row[0] if row else None

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """The statement once, with ``params`` (one message to the server: psycopg's
        ``executemany`` of a single row still enters and syncs a pipeline)."""
        compiled = self.compiled_for(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(compiled.sql, compiled.bind(params))
        finally:
            cursor.close()

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per row of values (an INSERT of several rows)."""
        compiled = self.compiled_for(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(compiled.sql, [compiled.bind(row) for row in rows])
        finally:
            cursor.close()


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
        # ``quick`` work on SQLite: one connection per event-loop thread (see ``_on_loop``).
        self._loop_engine: Any = None
        self._loop_local = threading.local()
        self._loop_connections: list[Connection] = []
        self._quick_writes = 0

    async def read(self, work: Callable[[Connection], T], *, quick: bool = False) -> T:
        """One round trip for the call path: ``work`` runs Core statements on a sync
        ``Connection`` (no transaction kept open, nothing written).

        aiosqlite hands every cursor, execute, fetch and close to its thread and back, five
        hops for one SELECT; here all of ``work`` runs in one hop to a thread with a plain
        sqlite3 connection. ``quick``: ``work`` is a few lookups by key, run on the event
        loop itself, no hop at all — in WAL mode a reader never waits for a writer, and the
        rare lock it could meet sends it to a thread instead. On PostgreSQL it runs on the
        async driver in autocommit, so a SELECT is one message to the server (no
        BEGIN/ROLLBACK), and psycopg prepares statements it has seen a few times.
        """
        if self.is_sqlite:
            if quick:
                done, result = self._on_loop(work, write=False)
                if done:
                    return result  # type: ignore[return-value]
            return await self._in_thread(work, write=False)
        return await self._autocommit(work)

    async def write(self, work: Callable[[Connection], T], *, quick: bool = False, single: bool = False) -> T:
        """Like ``read``, in one transaction committed at the end (rolled back on error);
        on SQLite queued behind the other writers of this process. ``quick``: a few rows
        by key, written on the event loop when SQLite's write lock is free at once
        (``BEGIN IMMEDIATE`` without waiting; held by another process, the work goes to a
        thread that waits for it as every writer does, up to the busy timeout).

        ``single``: ``work`` runs one statement. On PostgreSQL it then runs in autocommit,
        where a statement is a transaction of its own (all of it or none, even with
        data-modifying CTEs): one round trip, without a BEGIN and a COMMIT of their own."""
        if not self.is_sqlite:
            if single:
                return await self._autocommit(work)
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        assert self._write_lock is not None
        async with self._write_lock:
            if quick:
                self._quick_writes += 1
                if self._quick_writes % CHECKPOINT_EVERY:
                    done, result = self._on_loop(work, write=True)
                    if done:
                        return result  # type: ignore[return-value]
            return await self._in_thread(work, write=True)

    async def _autocommit(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await conn.run_sync(work)

    def _on_loop(self, work: Callable[[Connection], T], *, write: bool) -> tuple[bool, T | None]:
        """(True, what ``work`` returned) on this thread's own connection, or (False, None)
        when SQLite was busy (a writer of another process; rolled back, nothing done)."""
        conn = self._loop_connection()
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            if write:
                raw.execute("BEGIN IMMEDIATE")
            result = work(conn)
            if write:
                raw.commit()
        except BaseException as error:
            raw.rollback()
            if conn.in_transaction():
                conn.rollback()
            if _is_busy(error):
                return False, None
            raise
        if conn.in_transaction():  # Core statements ran through ``conn`` itself
            conn.rollback()  # nothing left open: a write was committed above
        return True, result

    def _loop_connection(self) -> Connection:
        conn: Connection | None = getattr(self._loop_local, "conn", None)
        if conn is None:
            if self._loop_engine is None:
                self._loop_engine = create_engine(
                    sync_url(self.url), echo=self._echo, poolclass=SingletonThreadPool,
                    connect_args={"check_same_thread": False},
                )
                event.listen(self._loop_engine, "connect", _sqlite_pragmas)
                event.listen(self._loop_engine, "connect", _on_loop_pragmas)
            conn = self._loop_local.conn = self._loop_engine.connect()
            self._loop_connections.append(conn)
        return conn

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
        for conn in self._loop_connections:
            conn.close()
        self._loop_connections.clear()
        self._loop_local = threading.local()
        if self._loop_engine is not None:
            self._loop_engine.dispose()
            self._loop_engine = None
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._sync_engine.dispose()
            self._threads = None
