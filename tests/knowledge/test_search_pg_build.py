"""``search reindex`` builds its HNSW index with enough memory: at least 1GB, and what the
server was given when that is more (a 1M-chunk base's graph needs ~3GB to be built in memory;
squeezed into 1GB, pgvector builds the rest on disk, many times slower)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from openbailian.knowledge.search_pg import rebuild
from openbailian.storage.db import migrate, sync_url
from tests.support import POSTGRES_URL, PostgresDatabase

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs OPENBAILIAN_TEST_POSTGRES_URL")


@pytest.fixture
def database_url():
    database = PostgresDatabase(POSTGRES_URL or "")
    url = database.create()
    try:
        migrate(url)
        yield url
    finally:
        database.drop()


def _memory_during_and_after_rebuild(url: str) -> tuple[str, str]:
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            rebuild(connection, [384])
            during = connection.execute(text("SHOW maintenance_work_mem")).scalar()
        with engine.connect() as connection:
            after = connection.execute(text("SHOW maintenance_work_mem")).scalar()
        return str(during), str(after)
    finally:
        engine.dispose()


def _configure(url: str, memory: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET maintenance_work_mem = '{memory}'")


def test_reindex_builds_with_at_least_1gb_and_keeps_what_the_server_gives_beyond(database_url):
    _configure(database_url, "64MB")
    assert _memory_during_and_after_rebuild(database_url) == ("1GB", "64MB")  # raised for the rebuild only

    _configure(database_url, "3GB")
    assert _memory_during_and_after_rebuild(database_url) == ("3GB", "3GB")  # never lowered to 1GB
