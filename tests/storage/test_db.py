"""``Database.read``/``write`` with ``quick``: SQLite work on the event loop's own connection.

A writer of another process holding SQLite's lock must not stall the loop (the write waits
in a thread, as every writer does, and lands when the lock is free); what ``Prepared``
statements store reads back through the ORM exactly as written; the loop's connection never
checkpoints, so the WAL is checkpointed by the threads' connections and stays bounded.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Integer, bindparam, insert, select, text

from openbailian.services import apps as app_service
from openbailian.storage.db import CHECKPOINT_EVERY, Database, Prepared, migrate
from openbailian.storage.models import ChatSession, SessionMessage, utcnow


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path / 'ob.db'}"
    migrate(url)
    database = Database(url)
    yield database
    await database.dispose()


def _path(db: Database) -> str:
    return db.url.removeprefix("sqlite:///")


_COUNT = Prepared(select(text("count(*)")).select_from(ChatSession))


async def _an_app(db: Database) -> str:
    from openbailian.config import Settings
    from openbailian.providers.registry import ModelRegistry

    models = ModelRegistry(Settings(home=Path(_path(db)).parent))
    async with db.transaction() as session:
        config = app_service.parse_config({"model": "echo"})
        app = await app_service.create_app(session, workspace_id="w", name="a", config=config, models=models)
    return app.id


_NEW_SESSION = Prepared(insert(ChatSession), columns=["id", "app_id", "workspace_id", "created_at", "updated_at"])


def _session_row(app_id: str, session_id: str) -> dict[str, object]:
    now = utcnow()
    return {"id": session_id, "app_id": app_id, "workspace_id": "w", "created_at": now, "updated_at": now}


async def test_a_write_while_another_process_holds_the_lock_waits_without_stalling_the_loop(db: Database) -> None:
    app_id = await _an_app(db)
    other = sqlite3.connect(_path(db), isolation_level=None)  # another process's writer
    other.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.create_task(
            db.write(lambda conn: _NEW_SESSION.run_many(conn, [_session_row(app_id, "s1")]), quick=True)
        )
        await asyncio.sleep(0)  # the write tries the lock on the loop, meets it taken, goes to a thread
        # The loop still answers: a read runs to the end while the write waits for the lock.
        assert await db.read(lambda conn: _COUNT.scalar(conn), quick=True) == 0
        assert not write.done()
    finally:
        other.execute("COMMIT")
        other.close()
    await write  # the lock is free: the write lands
    assert await db.read(lambda conn: _COUNT.scalar(conn), quick=True) == 1


async def test_a_failed_quick_write_leaves_nothing_behind(db: Database) -> None:
    app_id = await _an_app(db)

    def half_then_fail(conn: Connection) -> None:
        _NEW_SESSION.run_many(conn, [_session_row(app_id, "s1")])
        _NEW_SESSION.run_many(conn, [_session_row(app_id, "s1")])  # the same id again: refused

    with pytest.raises(sqlite3.IntegrityError):
        await db.write(half_then_fail, quick=True)
    assert await db.read(lambda conn: _COUNT.scalar(conn), quick=True) == 0
    await db.write(lambda conn: _NEW_SESSION.run_many(conn, [_session_row(app_id, "s2")]), quick=True)
    assert await db.read(lambda conn: _COUNT.scalar(conn), quick=True) == 1


async def test_prepared_statements_store_what_the_orm_reads_back(db: Database) -> None:
    app_id = await _an_app(db)
    row = _session_row(app_id, "s1")
    messages = Prepared(
        insert(SessionMessage),
        columns=["session_id", "seq", "role", "content", "cut", "request_id", "created_at"],
    )
    message = {"session_id": "s1", "seq": 0, "role": "user", "content": "你好", "cut": True,
               "request_id": "r", "created_at": row["created_at"]}

    def store(conn: Connection) -> None:
        _NEW_SESSION.run_many(conn, [row])
        messages.run_many(conn, [message])

    await db.write(store, quick=True)
    async with db.session() as session:
        stored = await session.get(ChatSession, "s1")
        kept = (await session.scalars(select(SessionMessage))).one()
    assert stored is not None and stored.created_at == row["created_at"].replace(tzinfo=None)
    assert (kept.content, kept.cut, kept.created_at) == ("你好", True, stored.created_at)
    found = await db.read(
        lambda conn: Prepared(
            select(SessionMessage.cut, SessionMessage.created_at).where(SessionMessage.seq == bindparam("seq", type_=Integer))
        ).first(conn, {"seq": 0}),
        quick=True,
    )
    assert found is not None and (found.cut, found.created_at) == (True, stored.created_at)


async def test_the_wal_is_checkpointed_while_quick_writes_go_on(db: Database) -> None:
    app_id = await _an_app(db)
    wal = Path(_path(db) + "-wal")
    page = 4096
    writes = CHECKPOINT_EVERY * 40
    for n in range(writes):
        session_row = _session_row(app_id, f"s{n}")
        session_row["workspace_id"] = "w" * 60  # rows big enough to fill pages quickly
        await db.write(lambda conn, r=session_row: _NEW_SESSION.run_many(conn, [r]), quick=True)  # type: ignore[misc]
    assert await db.read(lambda conn: _COUNT.scalar(conn), quick=True) == writes
    # Never checkpointed, every write's pages would stay in the WAL (at least one each).
    assert wal.stat().st_size < writes * page
