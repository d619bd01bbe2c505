"""A turn on PostgreSQL is one statement (the session row, its messages, the call's usage):
continuations of one session through two servers on one database stay one at a time,
ordered and complete, and a turn the database refuses stores nothing of itself.

The two servers are two runtimes (each its own connection pool and session locks, as two
``serve`` processes have) in this process; tests/test_multiprocess.py does the same with
real processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from openbailian.engine.call import UsageSlip
from openbailian.engine.sessions import SessionStore, new_session_id
from openbailian.storage.db import Database, sync_url
from tests.support import POSTGRES_URL, LiveServer, PostgresDatabase, make_settings, serve_in_thread
from tests.test_multiprocess import CountingModel

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL: set OPENBAILIAN_TEST_POSTGRES_URL")


@pytest.fixture
def database() -> Iterator[str]:
    assert POSTGRES_URL
    created = PostgresDatabase(POSTGRES_URL)
    yield created.create()
    created.drop()


@pytest.fixture
def model() -> Iterator[CountingModel]:
    counting = CountingModel()
    with serve_in_thread(counting.app) as url:
        counting.url = f"{url}/v1"
        yield counting


@pytest.fixture
def two_servers(tmp_path: Path, database: str, model: CountingModel) -> Iterator[tuple[LiveServer, LiveServer]]:
    models = {"counter": {"provider": "openai", "base_url": model.url, "model": "counter", "max_retries": 0}}
    first = LiveServer(make_settings(tmp_path / "one", database, models=models, max_history_turns=500)).start()
    second = LiveServer(make_settings(tmp_path / "two", database, models=models, max_history_turns=500))
    second._keys = first._keys  # noqa: SLF001  (one database: the key made through the first works on both)
    second.start()
    yield first, second
    second.stop()
    first.stop()


def _rows(database: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(sync_url(database), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def test_concurrent_continuations_through_two_servers_keep_every_turn_in_order(
    two_servers: tuple[LiveServer, LiveServer], database: str, model: CountingModel
) -> None:
    first, second = two_servers
    app_id = first.app(model="counter")
    opened = first.call(app_id, {"input": {"prompt": "turn start"}})
    assert opened.status_code == 200, opened.text
    session_id = opened.json()["output"]["session_id"]
    auth = first.auth()
    turns = 30

    async def continue_on(server: LiveServer, n: int) -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await client.post(f"/api/v1/apps/{app_id}/completion", headers=auth,
                                     json={"input": {"prompt": f"turn {n}", "session_id": session_id}})

    async def all_at_once() -> list[httpx.Response]:
        return await asyncio.gather(*(continue_on(second if n % 2 else first, n) for n in range(turns)))

    model.most_at_once = 0
    answers = asyncio.run(all_at_once())
    assert [a.status_code for a in answers] == [200] * turns, [a.text for a in answers if a.status_code != 200][:2]
    assert model.most_at_once == 1  # never two runs of the session at once, in either server

    rows = _rows(database, "SELECT seq, role, content FROM session_messages WHERE session_id = :s ORDER BY seq",
                 s=session_id)
    assert [seq for seq, _, _ in rows] == list(range(2 * (turns + 1)))
    assert [role for _, role, _ in rows] == ["user", "assistant"] * (turns + 1)
    users = [content for _, _, content in rows[0::2]]
    assert sorted(users[1:]) == sorted(f"turn {n}" for n in range(turns))
    # Each run saw every earlier turn: the k-th answer counted k + 1 user messages, its own last.
    assert [content for _, _, content in rows[1::2]] == [f"{k + 1}:{user}" for k, user in enumerate(users)]
    # Every call was counted once, in the turn's own statement.
    counted = _rows(database, "SELECT sum(calls) FROM usage_days WHERE app_id = :a", a=app_id)
    assert counted == [(turns + 1,)]


async def test_a_turn_the_database_refuses_stores_nothing(tmp_path: Path, database: str) -> None:
    server = LiveServer(make_settings(tmp_path / "home", database)).start()
    try:
        app_id = server.app()
        stored = server.call(app_id, {"input": {"prompt": "hello"}})
        assert stored.status_code == 200, stored.text
        existing = stored.json()["output"]["session_id"]
    finally:
        server.stop()
    db = Database(database)
    store = SessionStore(db)
    before = _rows(database, "SELECT count(*), (SELECT sum(calls) FROM usage_days) FROM session_messages")

    def turn(session_id: str, app: str, *, new: bool) -> object:
        return store.append(session_id=session_id, app_id=app, workspace_id="ws1",
                            messages=[{"role": "user", "content": "again"}], answer="no", cut=False,
                            request_id="r", new=new, usage=UsageSlip(), tokens=(3, 1))

    try:
        with pytest.raises(Exception, match="foreign key"):  # an app that does not exist (deleted meanwhile)
            await turn(new_session_id(), "no-such-app", new=True)
        with pytest.raises(Exception, match="duplicate key"):  # a new session whose id is taken
            await turn(existing, app_id, new=True)
        # The pool's connections are usable afterwards: a valid turn lands.
        await turn(existing, app_id, new=False)
    finally:
        await store.locks.aclose()
        await db.dispose()
    after = _rows(database, "SELECT count(*), (SELECT sum(calls) FROM usage_days) FROM session_messages")
    assert after == [(before[0][0] + 2, before[0][1] + 1)]  # only the valid turn: its two messages, one call
    assert _rows(database, "SELECT count(*) FROM chat_sessions") == [(1,)]
