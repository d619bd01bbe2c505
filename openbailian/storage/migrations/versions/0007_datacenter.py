"""data center: categories, data-center documents beside session files, index chunking and jobs

Revision ID: 0007
Revises: 0002, 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
# It alters tables of the knowledge (0002) and session-file (0003, 0005) branches, so it
# comes after both (a merge point) rather than on a branch of its own from 0001.
down_revision = ("0002", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datacenter_categories",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("category_type", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_datacenter_categories_workspace_id", "datacenter_categories", ["workspace_id"])
    op.create_table(
        "knowledge_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("base_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("document_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["base_id"], ["knowledge_bases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_knowledge_jobs_base_id", "knowledge_jobs", ["base_id"])
    op.create_index("ix_knowledge_jobs_workspace_id", "knowledge_jobs", ["workspace_id"])
    with op.batch_alter_table("session_files") as batch:
        batch.add_column(
            sa.Column("category_type", sa.String(length=32), server_default="SESSION_FILE", nullable=False)
        )
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
    with op.batch_alter_table("knowledge_bases") as batch:
        batch.add_column(sa.Column("chunk_size", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("overlap_size", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("separator", sa.Text(), nullable=True))
        batch.add_column(sa.Column("options", sa.JSON(), nullable=True))
    with op.batch_alter_table("knowledge_documents") as batch:
        batch.add_column(sa.Column("source_id", sa.String(length=64), nullable=True))
        batch.create_index("ix_knowledge_documents_source_id", ["source_id"])


def downgrade() -> None:
    with op.batch_alter_table("knowledge_documents") as batch:
        batch.drop_index("ix_knowledge_documents_source_id")
        batch.drop_column("source_id")
    with op.batch_alter_table("knowledge_bases") as batch:
        for column in ("options", "separator", "overlap_size", "chunk_size"):
            batch.drop_column(column)
    with op.batch_alter_table("session_files") as batch:
        batch.drop_column("tags")
        batch.drop_column("category_type")
    op.drop_table("knowledge_jobs")
    op.drop_table("datacenter_categories")
