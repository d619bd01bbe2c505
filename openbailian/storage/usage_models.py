"""Usage counters: calls, errors and tokens per (workspace, app, UTC day), kept in up to
``SLOTS`` rows per day that the report adds up (a slotted counter)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, Date, Integer, SmallInteger, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from openbailian.storage.db import Prepared
from openbailian.storage.models import Base

__all__ = ["SLOTS", "UsageDay", "add_to_day", "count_call", "utc_today"]

SLOTS = 64  # rows per workspace, app and day that calls add to (see ``count_call``)


class UsageDay(Base):
    """A share of one workspace's, app's and day's (UTC) counts: the day's figures are the sum
    of its rows (one per ``slot``), each added to by an atomic upsert per call.

    No foreign keys: the counts of a deleted app stay (they are history, not state)."""

    __tablename__ = "usage_days"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


def utc_today() -> date:
    return datetime.now(UTC).date()


def add_to_day(dialect_insert: Any) -> Any:
    """``INSERT … ON CONFLICT DO UPDATE SET calls = calls + excluded.calls …`` (built once)."""
    statement = dialect_insert(UsageDay)
    added = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[UsageDay.workspace_id, UsageDay.app_id, UsageDay.day, UsageDay.slot],
        set_={
            "calls": UsageDay.calls + added.calls,
            "errors": UsageDay.errors + added.errors,
            "input_tokens": UsageDay.input_tokens + added.input_tokens,
            "output_tokens": UsageDay.output_tokens + added.output_tokens,
        },
    )


_DAY_COLUMNS = ["workspace_id", "app_id", "day", "slot", "calls", "errors", "input_tokens", "output_tokens"]
_ADD_TO_DAY = {
    "sqlite": Prepared(add_to_day(sqlite.insert), columns=_DAY_COLUMNS),
    "postgresql": Prepared(add_to_day(postgresql.insert), columns=_DAY_COLUMNS),
}


def count_call(
    conn: Connection, *, workspace_id: str, app_id: str, ok: bool, input_tokens: int = 0,
    output_tokens: int = 0, day: date | None = None, calls: int = 1,
) -> None:
    """Add one finished call to its UTC day's counters, in ``conn``'s transaction (one
    atomic upsert, so calls finishing together in any number of processes never lose a count)."""
    _ADD_TO_DAY[conn.dialect.name].run_many(conn, [{
        "workspace_id": workspace_id, "app_id": app_id, "day": day or utc_today(), "slot": _slot(conn),
        "calls": calls, "errors": 0 if ok else 1,
        "input_tokens": max(0, input_tokens), "output_tokens": max(0, output_tokens),
    }])


def _slot(conn: Connection) -> int:
    """The row of the day this transaction adds to: on PostgreSQL one per server process of the
    connection (its backend pid), so transactions in flight together, in one API process or
    several, update different rows. With one row, each would wait on that row's lock for the
    one before it to commit, and a commit waits for its API process's event loop to send it:
    every call of every process queued behind the busiest loop (measured: on average 5 to 13
    backends waiting on it under load, see docs/benchmarks.md). SQLite has one writer at a
    time anyway: one row."""
    if conn.dialect.name != "postgresql":
        return 0
    backend_pid: int = conn.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
    return backend_pid % SLOTS
