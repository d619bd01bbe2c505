"""PostgreSQL connections of one process (OPENBAILIAN_DATABASE_POOL_SIZE): bursts of more
concurrent requests than the pool holds are all answered, on the pool's connections, which
stay open between bursts instead of being opened and closed per burst."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from openbailian.storage.db import Database, migrate

_BACKEND = text("SELECT pg_backend_pid() FROM pg_sleep(0.005)")


async def test_a_burst_past_the_pool_waits_for_its_connections_and_keeps_them(database_url: str | None) -> None:
    if database_url is None:
        pytest.skip("PostgreSQL only: set OPENBAILIAN_TEST_POSTGRES_URL")
    migrate(database_url)
    db = Database(database_url, pool_size=3)

    async def burst() -> set[int]:
        async def read() -> int:
            return int(await db.read(lambda conn: conn.execute(_BACKEND).scalar()))

        async def write() -> int:
            return int(await db.write(lambda conn: conn.execute(_BACKEND).scalar()))

        return set(await asyncio.gather(*(read() if i % 2 else write() for i in range(40))))

    try:
        first, second = await burst(), await burst()
    finally:
        await db.dispose()
    assert len(first) <= 3
    assert second <= first  # the same server processes: no connection was closed and opened again
