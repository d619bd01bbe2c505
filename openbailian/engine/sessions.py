"""Conversation sessions: stored turns, and one writer per session at a time."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from openbailian.errors import SessionNotFound
from openbailian.providers.base import ChatMessage
from openbailian.storage.db import Database, async_url
from openbailian.storage.models import ChatSession, SessionMessage, utcnow

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

    def __init__(self, db: Database | None = None) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._shared: AsyncEngine | None = None
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

    @asynccontextmanager
    async def _advisory(self, session_id: str) -> AsyncIterator[None]:
        assert self._shared is not None
        key = int.from_bytes(hashlib.blake2b(session_id.encode(), digest_size=8).digest(), "big", signed=True)
        conn = await self._shared.connect()
        unlocked = False
        try:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            yield
            with anyio.CancelScope(shield=True):
                unlocked = bool(await conn.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key}))
        finally:
            with anyio.CancelScope(shield=True):
                if not unlocked:  # cancelled while waiting, or failed: closing the connection frees the lock
                    await conn.invalidate()
                await conn.close()

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.dispose()


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.locks = SessionLocks(db)

    async def check(self, session_id: str, app_id: str) -> None:
        async with self._db.session() as session:
            found = await session.get(ChatSession, session_id)
        if found is None or found.app_id != app_id:
            raise SessionNotFound(
                f"Session '{session_id}' does not exist for this app "
                "(it may have been deleted); start a new one by omitting session_id"
            )

    async def history(self, session_id: str) -> list[ChatMessage]:
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(SessionMessage.role, SessionMessage.content)
                .where(SessionMessage.session_id == session_id)
                .order_by(SessionMessage.seq)
            )
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
    ) -> None:
        """Store a finished (or cut) turn; ``new``: the session's first turn, which creates it.

        Across processes, the update of the session row comes first, so a second
        writer waits on its row lock and then numbers its messages after the
        first one's.
        """
        now = utcnow()
        # Core statements on a bare connection, not an ORM session: every call's path.
        async with self._db.begin() as conn:
            touched = 0
            if not new:
                result = await conn.execute(
                    update(ChatSession).where(ChatSession.id == session_id).values(updated_at=now)
                )
                touched = result.rowcount
            if touched:
                last = await conn.scalar(
                    select(func.max(SessionMessage.seq)).where(
                        SessionMessage.session_id == session_id
                    )
                )
                next_seq = (last + 1) if last is not None else 0
            else:
                await conn.execute(
                    insert(ChatSession).values(
                        id=session_id, app_id=app_id, workspace_id=workspace_id,
                        created_at=now, updated_at=now,
                    )
                )
                next_seq = 0
            stored = [*messages, {"role": "assistant", "content": answer}]
            await conn.execute(
                insert(SessionMessage),
                [
                    {
                        "session_id": session_id,
                        "seq": next_seq + offset,
                        "role": message["role"],
                        "content": message["content"],
                        "cut": cut and offset == len(stored) - 1,
                        "request_id": request_id,
                        "created_at": now,
                    }
                    for offset, message in enumerate(stored)
                ],
            )
