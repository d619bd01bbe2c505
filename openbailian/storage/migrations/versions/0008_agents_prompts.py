"""agents and prompt templates: apps keep unmapped agent settings; prompt templates

Revision ID: 0008
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(
            sa.Column("unmapped_settings", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    op.create_table(
        "prompt_templates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_prompt_templates_workspace_id_id", "prompt_templates", ["workspace_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_prompt_templates_workspace_id_id", table_name="prompt_templates")
    op.drop_table("prompt_templates")
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("unmapped_settings")
