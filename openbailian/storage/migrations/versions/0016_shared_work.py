"""shared work and limits: queued memory extractions, rate buckets shared by processes

Revision ID: 0016
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0004"  # memory_extractions refers to memories
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memory_extractions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("memory_id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("user_text", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["memory_id"], ["memories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_memory_extractions_memory_id", "memory_extractions", ["memory_id"])
    op.create_index("ix_memory_extractions_status", "memory_extractions", ["status"])
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_rate_buckets_updated", "rate_buckets", ["updated"])


def downgrade() -> None:
    op.drop_index("ix_rate_buckets_updated", table_name="rate_buckets")
    op.drop_table("rate_buckets")
    op.drop_index("ix_memory_extractions_status", table_name="memory_extractions")
    op.drop_index("ix_memory_extractions_memory_id", table_name="memory_extractions")
    op.drop_table("memory_extractions")
