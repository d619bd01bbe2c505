"""ingestion progress: chunks embedded of a document's total, since when it embeds

Revision ID: 0018
Revises: 0002 (it adds columns to knowledge_documents)
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("knowledge_documents") as batch:
        batch.add_column(sa.Column("chunks_total", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("chunks_embedded", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("embedding_started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("knowledge_documents") as batch:
        batch.drop_column("embedding_started_at")
        batch.drop_column("chunks_embedded")
        batch.drop_column("chunks_total")
