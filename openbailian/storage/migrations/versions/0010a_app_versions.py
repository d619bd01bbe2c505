"""published app versions (listed and rolled back to in the console)

Revision ID: 0010a
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010a"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_versions",
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id", "version"),
    )


def downgrade() -> None:
    op.drop_table("app_versions")
