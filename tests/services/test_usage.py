"""The usage counter on a real database (SQLite, or PostgreSQL with OPENBAILIAN_TEST_POSTGRES_URL):
calls finishing together in several processes' worth of connections lose no count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest

from openbailian.config import Settings
from openbailian.services.usage import CallOutcome, record_call, usage_report
from openbailian.storage.db import Database, migrate

DAY = date(2026, 3, 14)


@pytest.fixture
async def url(settings: Settings) -> AsyncIterator[str]:
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    yield settings.resolved_database_url


async def _report(url: str, workspace_id: str, days: int = 7, today: date = DAY):
    db = Database(url)
    try:
        async with db.session() as session:
            return await usage_report(session, workspace_id, days=days, today=today)
    finally:
        await db.dispose()


async def test_concurrent_calls_from_several_processes_lose_no_count(url: str) -> None:
    # Each Database is what one server process holds: its own pool (and, on SQLite, its own
    # in-process write queue), so the upserts really race in the database.
    processes = [Database(url) for _ in range(4)]
    per_process = 25

    async def calls(db: Database, n: int) -> None:
        await asyncio.gather(*(
            record_call(db, CallOutcome("ws1", "app1", ok=i % 5 != 0, input_tokens=3, output_tokens=2), day=DAY)
            for i in range(n)
        ))

    try:
        await asyncio.gather(*(calls(db, per_process) for db in processes))
    finally:
        for db in processes:
            await db.dispose()

    report = await _report(url, "ws1")
    assert len(report.rows) == 1
    row = report.rows[0]
    total = 4 * per_process
    assert (row.app_id, row.day) == ("app1", DAY)
    assert row.calls == total
    assert row.errors == 4 * len([i for i in range(per_process) if i % 5 == 0])
    assert (row.input_tokens, row.output_tokens) == (3 * total, 2 * total)


async def test_counts_are_kept_per_workspace_app_and_day(url: str) -> None:
    db = Database(url)
    try:
        await record_call(db, CallOutcome("ws1", "app1", ok=True, input_tokens=10, output_tokens=4), day=DAY)
        await record_call(db, CallOutcome("ws1", "app1", ok=False), day=DAY)
        await record_call(db, CallOutcome("ws1", "app2", ok=True, input_tokens=1, output_tokens=1), day=DAY)
        await record_call(db, CallOutcome("ws1", "app1", ok=True, input_tokens=5, output_tokens=5), day=DAY - timedelta(days=1))
        await record_call(db, CallOutcome("ws2", "app9", ok=True, input_tokens=7, output_tokens=7), day=DAY)
        await record_call(db, CallOutcome("ws1", "app1", ok=True), day=DAY - timedelta(days=30))  # out of range
    finally:
        await db.dispose()

    report = await _report(url, "ws1", days=7)
    rows = [(r.day, r.app_id, r.calls, r.errors, r.input_tokens, r.output_tokens) for r in report.rows]
    assert rows == [
        (DAY, "app1", 2, 1, 10, 4),
        (DAY, "app2", 1, 0, 1, 1),
        (DAY - timedelta(days=1), "app1", 1, 0, 5, 5),
    ]
    totals = report.day_totals()
    assert len(totals) == 7 and totals[0].day == DAY - timedelta(days=6) and totals[-1].day == DAY
    assert [(t.calls, t.errors) for t in totals[-2:]] == [(1, 0), (3, 1)]
    assert sum(t.calls for t in totals[:-2]) == 0
    assert report.total().calls == 4
    assert "app9" not in {r.app_id for r in report.rows}  # another workspace's app
    other = await _report(url, "ws2")
    assert [(r.app_id, r.calls) for r in other.rows] == [("app9", 1)]


async def test_a_report_range_is_held_to_one_to_ninety_two_days(url: str) -> None:
    assert len((await _report(url, "ws1", days=0)).days) == 1
    assert len((await _report(url, "ws1", days=10_000)).days) == 92
