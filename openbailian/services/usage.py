"""Usage: calls, errors and tokens per workspace, app and day.

Days are UTC days. ``record_call`` is called once per finished app call (answered or
failed) and adds to the day's counters with one atomic upsert
(``INSERT … ON CONFLICT DO UPDATE SET calls = calls + 1 …``, on SQLite and PostgreSQL), so
calls finishing together in any number of processes never lose a count. On PostgreSQL a
day's counts are spread over several rows (``storage/usage_models.py`` ``SLOTS``) so that
concurrent calls do not queue on one row's lock; ``usage_report`` adds them up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.storage.db import Database
from openbailian.storage.usage_models import UsageDay, count_call, utc_today

__all__ = ["MAX_REPORT_DAYS", "CallOutcome", "UsageRow", "UsageReport", "record_call", "usage_report", "utc_today"]

MAX_REPORT_DAYS = 92


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """One finished call of an app, as counted."""

    workspace_id: str
    app_id: str
    ok: bool
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: date
    app_id: str
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    """A workspace's usage from ``first`` to ``last`` (UTC days, both included)."""

    workspace_id: str
    first: date
    last: date
    rows: list[UsageRow]  # newest day first, then by app id

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def app_ids(self) -> list[str]:
        return sorted({row.app_id for row in self.rows})

    def day_totals(self) -> list[UsageRow]:
        """One row per day of the range (zeros on days without calls), oldest first."""
        totals = {day: [0, 0, 0, 0] for day in self.days}
        for row in self.rows:
            sums = totals[row.day]
            sums[0] += row.calls
            sums[1] += row.errors
            sums[2] += row.input_tokens
            sums[3] += row.output_tokens
        return [UsageRow(day, "", *sums) for day, sums in totals.items()]

    def total(self) -> UsageRow:
        """The whole range in one row (dated its last day, no app)."""
        rows = self.rows
        return UsageRow(
            self.last,
            "",
            sum(r.calls for r in rows),
            sum(r.errors for r in rows),
            sum(r.input_tokens for r in rows),
            sum(r.output_tokens for r in rows),
        )


async def record_call(db: Database, outcome: CallOutcome, *, day: date | None = None) -> None:
    """Count one finished call on its UTC day (today unless ``day`` is given): one round trip."""
    await db.write(lambda conn: count_call(
        conn, workspace_id=outcome.workspace_id, app_id=outcome.app_id, ok=outcome.ok,
        input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens, day=day,
    ), quick=True)


async def usage_report(
    session: AsyncSession, workspace_id: str, *, days: int = 14, today: date | None = None
) -> UsageReport:
    """The workspace's counters for the last ``days`` UTC days (1 to 92), today included."""
    days = min(max(1, days), MAX_REPORT_DAYS)
    last = today or utc_today()
    first = last - timedelta(days=days - 1)
    query = (
        select(
            UsageDay.day, UsageDay.app_id, func.sum(UsageDay.calls), func.sum(UsageDay.errors),
            func.sum(UsageDay.input_tokens), func.sum(UsageDay.output_tokens),
        )
        .where(UsageDay.workspace_id == workspace_id, UsageDay.day >= first, UsageDay.day <= last)
        .group_by(UsageDay.day, UsageDay.app_id)
        .order_by(UsageDay.day.desc(), UsageDay.app_id)
    )
    rows = [
        UsageRow(day, app_id, int(calls), int(errors), int(input_tokens), int(output_tokens))
        for day, app_id, calls, errors, input_tokens, output_tokens in await session.execute(query)
    ]
    return UsageReport(workspace_id=workspace_id, first=first, last=last, rows=rows)
