"""usage counters in slots: up to 64 rows per workspace, app and day, added up when read

Revision ID: 0020
Revises: 0014 (it rebuilds its table)

The primary key gains ``slot``, so the table is built anew and the counts copied (as slot 0):
one way for SQLite and PostgreSQL alike.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0014"
branch_labels = None
depends_on = None

_COUNTS = "calls, errors, input_tokens, output_tokens"


def _counter_table(name: str, *, slotted: bool) -> None:
    key = ["workspace_id", "app_id", "day", *(["slot"] if slotted else [])]
    op.create_table(
        name,
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *([sa.Column("slot", sa.SmallInteger(), nullable=False)] if slotted else []),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*key, name=f"{name}_pkey"),
    )


def upgrade() -> None:
    _counter_table("usage_day_slots", slotted=True)
    op.execute(
        f"INSERT INTO usage_day_slots (workspace_id, app_id, day, slot, {_COUNTS}) "
        f"SELECT workspace_id, app_id, day, 0, {_COUNTS} FROM usage_days"
    )
    op.drop_table("usage_days")
    op.rename_table("usage_day_slots", "usage_days")


def downgrade() -> None:
    _counter_table("usage_day_totals", slotted=False)
    op.execute(
        f"INSERT INTO usage_day_totals (workspace_id, app_id, day, {_COUNTS}) "
        "SELECT workspace_id, app_id, day, sum(calls), sum(errors), sum(input_tokens), sum(output_tokens) "
        "FROM usage_days GROUP BY workspace_id, app_id, day"
    )
    op.drop_table("usage_days")
    op.rename_table("usage_day_totals", "usage_days")
