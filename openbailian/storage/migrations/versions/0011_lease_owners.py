"""lease owners: the token of the worker holding a claim on a document or a session file

Revision ID: 0011
Revises: 0002, 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = ("0002", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("knowledge_documents", "session_files"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("lease_owner", sa.String(32), nullable=True))


def downgrade() -> None:
    for table in ("knowledge_documents", "session_files"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("lease_owner")
