"""Conversation sessions: stored turns, and one writer per session at a time."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from sqlalchemy import (
    Boolean,
    Connection,
    DateTime,
    Integer,
    String,
    Text,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from openbailian.engine.call import SessionAhead, UsageSlip
from openbailian.errors import SessionNotFound
from openbailian.providers.base import ChatMessage
from openbailian.storage.db import Database, Prepared, async_url
from openbailian.storage.models import ChatSession, SessionMessage, utcnow
from openbailian.storage.usage_models import SLOTS, UsageDay, add_to_day, count_call, utc_today

__all__ = ["SessionStore", "SessionLocks", "new_session_id"]


def new_session_id() -> str:
    return uuid.uuid4().hex


class SessionLocks:
    """One run at a time per session: in this process an ``asyncio.Lock``, and on PostgreSQL
    also across processes, with a session-level advisory lock on the session id's hash.

    Two requests on one session would otherwise both read N turns and both
    append turn N+1. Waiters queue (as in one process) rather than being refused.
    The in-process lock is taken first, so a process holds at most one database
    connection per session, waiting or running; those connections come from a pool
    of their own, so waiting runs never starve the queries of running ones. A process
    that dies drops its connection and with it the lock. On SQLite the rule holds within
    a process; across processes on one machine the database's single writer keeps turns
    whole, and the (session_id, seq) unique constraint turns any other race into an
    error, never a mix.
    """

    MAX_REMEMBERED = 10_000  # sessions whose last stored turn is remembered (see unchanged_since)

    def __init__(self, db: Database | None = None) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._stores = 0  # turns stored by this process
        self._last_store: OrderedDict[str, int] = OrderedDict()  # session → its last turn's number
        self._forgotten = 0  # the highest number dropped from _last_store
        self._shared: AsyncEngine | None = None
        # A held session's history, read right after its advisory lock was granted (taken by ``history_read``).
        self._history: dict[str, list[ChatMessage]] = {}
        if db is not None and not db.is_sqlite:
            # AUTOCOMMIT: the connection waits and holds outside any transaction.
            self._shared = create_async_engine(
                async_url(db.url), pool_size=5, max_overflow=45, pool_timeout=600,
                isolation_level="AUTOCOMMIT",
            )

    @asynccontextmanager
    async def hold(self, session_id: str, *, across_processes: bool = True) -> AsyncIterator[None]:
        """``across_processes=False``: a session created by this very run, known to nobody else."""
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        self._users[session_id] = self._users.get(session_id, 0) + 1
        try:
            async with lock:
                if self._shared is None or not across_processes:
                    yield
                else:
                    async with self._advisory(session_id):
                        yield
        finally:
            self._users[session_id] -= 1
            if not self._users[session_id]:
                del self._users[session_id]
                del self._locks[session_id]

    def generation(self) -> int:
        """The number of turns this process has stored so far (taken before reading ahead)."""
        return self._stores

    def stored(self, session_id: str) -> None:
        """A turn of ``session_id`` was committed by this process."""
        self._stores += 1
        self._last_store[session_id] = self._stores
        self._last_store.move_to_end(session_id)
        if len(self._last_store) > self.MAX_REMEMBERED:
            _, number = self._last_store.popitem(last=False)
            self._forgotten = max(self._forgotten, number)

    def unchanged_since(self, session_id: str, generation: int) -> bool:
        """Whether this process has committed no turn of ``session_id`` since ``generation``
        (a forgotten session counts as changed at its last number)."""
        return self._last_store.get(session_id, self._forgotten) <= generation

    def history_read(self, session_id: str) -> list[ChatMessage] | None:
        """The history read with the advisory lock of ``session_id`` this run holds (once), or None."""
        return self._history.pop(session_id, None)

    @asynccontextmanager
    async def _advisory(self, session_id: str) -> AsyncIterator[None]:
        assert self._shared is not None
        key = int.from_bytes(hashlib.blake2b(session_id.encode(), digest_size=8).digest(), "big", signed=True)
        conn = await self._shared.connect()
        unlocked = False
        try:
            self._history[session_id] = await _lock_and_read_history(conn, key, session_id)
            yield
            with anyio.CancelScope(shield=True):
                unlocked = bool(await conn.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key}))
        finally:
            self._history.pop(session_id, None)
            with anyio.CancelScope(shield=True):
                if not unlocked:  # cancelled while waiting, or failed: closing the connection frees the lock
                    await conn.invalidate()
                await conn.close()

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.dispose()


class SessionStore:
    """Turns in ``chat_sessions`` / ``session_messages``; each method is one round trip
    (``Database.read`` / ``write``) of statements built once."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.locks = SessionLocks(db)

    async def check(self, session_id: str, app_id: str) -> None:
        found = await self._db.read(lambda conn: _SESSION_APP.scalar(conn, {"session_id": session_id}), quick=True)
        if found is None or found != app_id:
            raise _session_not_found(session_id)

    def read_ahead(self, session_id: str) -> Callable[[Connection], SessionAhead]:
        """Work for someone else's round trip (the API key's query): the session's app and, on
        SQLite, its history — used under the session's lock if no turn was stored meanwhile
        (``ahead_history``). On PostgreSQL other processes store turns too, so the history is
        read under the lock."""
        generation = self.locks.generation()  # before the read: a turn stored after it is seen as new
        with_history = self._db.is_sqlite

        def work(conn: Connection) -> SessionAhead:
            app_id = _SESSION_APP.scalar(conn, {"session_id": session_id})
            history = None
            if with_history and app_id is not None:
                rows = _HISTORY.all(conn, {"session_id": session_id})
                history = tuple({"role": role, "content": content} for role, content in rows)
            return SessionAhead(session_id, app_id, history, generation)

        return work

    def check_ahead(self, ahead: SessionAhead, app_id: str) -> None:
        """``check`` on what was read ahead."""
        if ahead.app_id is None or ahead.app_id != app_id:
            raise _session_not_found(ahead.session_id)

    def ahead_history(self, ahead: SessionAhead | None) -> list[ChatMessage] | None:
        """The history read ahead, while still current (call under the session's lock); else None."""
        if ahead is None or ahead.history is None or not self.locks.unchanged_since(ahead.session_id, ahead.generation):
            return None
        return list(ahead.history)

    async def history(self, session_id: str) -> list[ChatMessage]:
        """The session's turns; under its advisory lock, those read in the lock's round trip."""
        read = self.locks.history_read(session_id)
        if read is not None:
            return read
        rows = await self._db.read(lambda conn: _HISTORY.all(conn, {"session_id": session_id}), quick=True)
        return [{"role": role, "content": content} for role, content in rows]

    async def append(
        self,
        *,
        session_id: str,
        app_id: str,
        workspace_id: str,
        messages: list[ChatMessage],
        answer: str,
        cut: bool,
        request_id: str,
        new: bool = False,
        usage: UsageSlip | None = None,
        tokens: tuple[int, int] = (0, 0),
    ) -> None:
        """Store a finished (or cut) turn; ``new``: the session's first turn, which creates it.
        With ``usage``, the same transaction counts the call with its (input, output) ``tokens``.

        On SQLite two statements in one transaction. Continuing a session, the session row
        is upserted first (created again if it was deleted meanwhile), which takes its row
        lock, so a second writer waits and then numbers its messages after the first one's,
        each message taking the next ``seq`` in its own INSERT … SELECT. On PostgreSQL one
        statement (``_postgresql_turn``), one round trip; there a continued session is
        written under its advisory lock (``SessionLocks``), so no other writer of it runs.
        """
        now = utcnow()
        stored = [*messages, {"role": "assistant", "content": answer}]
        rows = [
            {
                "session_id": session_id,
                "seq": offset,
                "role": message["role"],
                "content": message["content"],
                "cut": cut and offset == len(stored) - 1,
                "request_id": request_id,
                "created_at": now,
            }
            for offset, message in enumerate(stored)
        ]
        session = {
            "id": session_id, "app_id": app_id, "workspace_id": workspace_id,
            "created_at": now, "updated_at": now,
        }

        def store(conn: Connection) -> None:
            if new:
                _NEW_SESSION.run_many(conn, [session])
                _FIRST_MESSAGES.run_many(conn, rows)
            else:
                _touch_session(conn.dialect.name).run_many(conn, [session])
                _NEXT_MESSAGE.run_many(conn, rows)
            if usage is not None:
                count_call(conn, workspace_id=workspace_id, app_id=app_id, ok=True,
                           input_tokens=tokens[0], output_tokens=tokens[1])

        if self._db.is_sqlite:
            await self._db.write(store, quick=True)
        else:
            statement = _POSTGRESQL_TURN[(new, usage is not None)]
            values = {
                **session, "session_id": session_id, "request_id": request_id, "now": now,
                "roles": [row["role"] for row in rows], "contents": [row["content"] for row in rows],
                "cuts": [row["cut"] for row in rows],
                "day": utc_today(), "input_tokens": max(0, tokens[0]), "output_tokens": max(0, tokens[1]),
            }
            await self._db.write(lambda conn: statement.run(conn, values), single=True)
        self.locks.stored(session_id)
        if usage is not None:
            usage.counted = True


async def _lock_and_read_history(conn: AsyncConnection, key: int, session_id: str) -> list[ChatMessage]:
    """Wait for the advisory lock ``key``, then read the session's turns: two statements in one
    round trip (psycopg's pipeline mode). The read runs once the lock is granted and, in
    READ COMMITTED, with a snapshot of its own taken then, so it sees the turn the previous
    holder committed before letting go."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    history = _HISTORY.compiled_for(conn.dialect)
    async with driver.pipeline():
        await driver.execute("SELECT pg_advisory_lock(%s)", [key])
        cursor = await driver.execute(history.sql, history.bind({"session_id": session_id}))
    rows = history.rows(await cursor.fetchall(), cursor.description)
    return [{"role": role, "content": content} for role, content in rows]


def _session_not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(
        f"Session '{session_id}' does not exist for this app "
        "(it may have been deleted); start a new one by omitting session_id"
    )


_SESSION_APP = Prepared(select(ChatSession.app_id).where(ChatSession.id == bindparam("session_id")))
_HISTORY = Prepared(
    select(SessionMessage.role, SessionMessage.content)
    .where(SessionMessage.session_id == bindparam("session_id"))
    .order_by(SessionMessage.seq)
)
_SESSION_COLUMNS = ["id", "app_id", "workspace_id", "created_at", "updated_at"]
_MESSAGE_COLUMNS = ["session_id", "seq", "role", "content", "cut", "request_id", "created_at"]
_NEW_SESSION = Prepared(insert(ChatSession), columns=_SESSION_COLUMNS)
_FIRST_MESSAGES = Prepared(insert(SessionMessage), columns=_MESSAGE_COLUMNS)
# Each row's seq is one past the session's last, read by the INSERT itself.
_NEXT_MESSAGE = Prepared(insert(SessionMessage).from_select(
    _MESSAGE_COLUMNS,
    select(
        bindparam("session_id", type_=String),
        func.coalesce(
            select(func.max(SessionMessage.seq))
            .where(SessionMessage.session_id == bindparam("session_id", type_=String))
            .scalar_subquery(),
            -1,
        )
        + 1,
        bindparam("role", type_=String),
        bindparam("content", type_=Text),
        bindparam("cut", type_=Boolean),
        bindparam("request_id", type_=String),
        bindparam("created_at", type_=DateTime),
    ),
))
def _upsert_session(dialect_insert: Any) -> Any:
    """INSERT the session row, or on conflict only set its ``updated_at``."""
    statement = dialect_insert(ChatSession)
    return statement.on_conflict_do_update(
        index_elements=[ChatSession.id], set_={"updated_at": statement.excluded.updated_at}
    )


_TOUCH = {
    "sqlite": Prepared(_upsert_session(sqlite_insert), columns=_SESSION_COLUMNS),
    "postgresql": Prepared(_upsert_session(postgresql_insert), columns=_SESSION_COLUMNS),
}


def _touch_session(dialect: str) -> Prepared:
    """The upsert of the session row in the database's own words (ON CONFLICT DO UPDATE)."""
    return _TOUCH[dialect]


def _postgresql_turn(*, new: bool, usage: bool) -> Prepared:
    """A turn in one PostgreSQL statement: the session row (inserted, or upserted when
    continuing), its messages from arrays (one prepared statement whatever their number;
    continuing, numbered after the session's last), and with ``usage`` the call counted in
    its day's slot, each a data-modifying CTE of one INSERT. A foreign key or unique
    constraint it breaks fails all of it."""
    sent = ChatSession.created_at.type
    new_session = postgresql_insert(ChatSession).values(
        id=bindparam("session_id", type_=String), app_id=bindparam("app_id", type_=String),
        workspace_id=bindparam("workspace_id", type_=String),
        created_at=bindparam("now", type_=sent), updated_at=bindparam("now", type_=sent),
    )
    if not new:
        new_session = new_session.on_conflict_do_update(
            index_elements=[ChatSession.id], set_={"updated_at": new_session.excluded.updated_at}
        )
    given = func.unnest(
        bindparam("roles", type_=ARRAY(String)), bindparam("contents", type_=ARRAY(Text)),
        bindparam("cuts", type_=ARRAY(Boolean)),
    ).table_valued("role", "content", "cut", with_ordinality="n").render_derived("m")
    first: Any = literal(0, Integer) if new else func.coalesce(
        select(func.max(SessionMessage.seq) + 1)
        .where(SessionMessage.session_id == bindparam("session_id", type_=String))
        .scalar_subquery(),
        0,
    )
    messages = insert(SessionMessage).from_select(
        _MESSAGE_COLUMNS,
        select(
            bindparam("session_id", type_=String), first + given.c.n - 1, given.c.role, given.c.content,
            given.c.cut, bindparam("request_id", type_=String), bindparam("now", type_=sent),
        ).select_from(given),
    )
    ctes = [new_session.cte("stored_session")]
    if usage:
        counted = add_to_day(postgresql_insert).values(
            workspace_id=bindparam("workspace_id", type_=String), app_id=bindparam("app_id", type_=String),
            day=bindparam("day", type_=UsageDay.day.type), slot=func.pg_backend_pid() % SLOTS,
            calls=1, errors=0, input_tokens=bindparam("input_tokens", type_=Integer),
            output_tokens=bindparam("output_tokens", type_=Integer),
        )
        ctes.append(counted.cte("counted_call"))
    return Prepared(messages.add_cte(*ctes))


# (a new session, with the call's usage) → its statement
_POSTGRESQL_TURN = {
    (new, usage): _postgresql_turn(new=new, usage=usage) for new in (True, False) for usage in (True, False)
}
