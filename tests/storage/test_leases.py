"""Work claims carry an owner token: a stalled worker cannot renew or release the claim of the
worker that took its row over (on SQLite, and on PostgreSQL with OPENBAILIAN_TEST_POSTGRES_URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from openbailian.config import Settings
from openbailian.storage import leases
from openbailian.storage.db import Database, migrate
from openbailian.storage.knowledge_models import KnowledgeBase, KnowledgeDocument
from openbailian.storage.models import Workspace, utcnow

LEASE = timedelta(minutes=2)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    async with database.transaction() as session:
        session.add(Workspace(id="ws1", name="ws1"))
        await session.flush()
        session.add(KnowledgeBase(id="b" * 32, workspace_id="ws1", name="hr", kind="unstructured"))
        await session.flush()
        session.add(KnowledgeDocument(
            id="d" * 32, base_id="b" * 32, workspace_id="ws1", name="leave.md", file_type=".md",
            size_bytes=1, sha256="0" * 64, storage_path="x",
        ))
    yield database
    await database.dispose()


async def _lease(db: Database) -> tuple[object, str | None]:
    async with db.session() as session:
        row = await session.get(KnowledgeDocument, "d" * 32)
        assert row is not None
        return row.lease_until, row.lease_owner


async def _run_out(db: Database) -> None:
    """The holder stalled past its lease."""
    async with db.transaction() as session:
        await session.execute(update(KnowledgeDocument).values(lease_until=utcnow() - timedelta(seconds=1)))


async def test_a_stalled_claimant_cannot_renew_or_release_the_claim_that_replaced_it(db: Database) -> None:
    stalled = await leases.claim(db, KnowledgeDocument, "d" * 32, LEASE)
    assert stalled is not None
    assert await leases.claim(db, KnowledgeDocument, "d" * 32, LEASE) is None  # held
    await _run_out(db)
    taker = await leases.claim(db, KnowledgeDocument, "d" * 32, LEASE)
    assert taker is not None and taker.token != stalled.token
    held_until, owner = await _lease(db)

    assert await leases.renew(db, stalled, timedelta(hours=5)) is False
    await leases.release(db, stalled)
    assert await _lease(db) == (held_until, owner) == (held_until, taker.token)
    assert await leases.claim(db, KnowledgeDocument, "d" * 32, LEASE) is None  # still the taker's

    assert await leases.renew(db, taker, LEASE) is True
    await leases.release(db, taker)
    assert await _lease(db) == (None, None)
    assert await leases.claim(db, KnowledgeDocument, "d" * 32, LEASE) is not None  # free again


async def test_keep_renewing_stops_once_the_claim_is_lost(db: Database) -> None:
    stalled = await leases.claim(db, KnowledgeDocument, "d" * 32, LEASE)
    assert stalled is not None
    await _run_out(db)
    taker = await leases.claim(db, KnowledgeDocument, "d" * 32, LEASE)
    assert taker is not None
    # A renewal beat of a tiny lease: it finds the claim lost and returns instead of renewing forever.
    await leases.keep_renewing(db, stalled, timedelta(milliseconds=3))
    assert (await _lease(db))[1] == taker.token
