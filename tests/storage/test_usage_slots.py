"""Migration 0020 spreads a day's usage over slots: counts stored before it are still reported
after it, and going back down adds the slots up again (SQLite, or PostgreSQL with
OPENBAILIAN_TEST_POSTGRES_URL)."""

from __future__ import annotations

from datetime import date

from alembic import command
from sqlalchemy import create_engine, text

from openbailian.services.usage import usage_report
from openbailian.storage.db import Database, alembic_config, migrate, sync_url

DAY = date(2026, 3, 14)
OLD_ROW = (
    "INSERT INTO usage_days (workspace_id, app_id, day, calls, errors, input_tokens, output_tokens) "
    "VALUES ('ws1', 'app1', :day, 7, 2, 70, 30)"
)


def _rows(url: str) -> list[tuple[object, ...]]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                text("SELECT app_id, calls, errors, input_tokens, output_tokens FROM usage_days ORDER BY app_id")
            )]
    finally:
        engine.dispose()


async def _report(url: str) -> list[tuple[object, ...]]:
    db = Database(url)
    try:
        async with db.session() as session:
            report = await usage_report(session, "ws1", days=1, today=DAY)
    finally:
        await db.dispose()
    return [(r.app_id, r.calls, r.errors, r.input_tokens, r.output_tokens) for r in report.rows]


async def test_counts_from_before_the_slots_survive_the_upgrade_and_the_downgrade(settings) -> None:
    url = settings.resolved_database_url
    settings.home.mkdir(parents=True, exist_ok=True)
    config = alembic_config(url)
    command.upgrade(config, "0014")  # a database from before the slots
    engine = create_engine(sync_url(url))
    with engine.begin() as connection:
        connection.execute(text(OLD_ROW), {"day": DAY})
    engine.dispose()

    migrate(url)
    assert await _report(url) == [("app1", 7, 2, 70, 30)]
    engine = create_engine(sync_url(url))
    with engine.begin() as connection:  # the same day's counts in two more slots, as concurrent calls leave them
        connection.execute(text(
            "INSERT INTO usage_days (workspace_id, app_id, day, slot, calls, errors, input_tokens, output_tokens) "
            "VALUES ('ws1', 'app1', :day, 5, 1, 0, 10, 3), ('ws1', 'app1', :day, 9, 2, 1, 20, 6)"
        ), {"day": DAY})
    engine.dispose()
    assert await _report(url) == [("app1", 10, 3, 100, 39)]

    command.downgrade(config, "0014")
    assert _rows(url) == [("app1", 10, 3, 100, 39)]
