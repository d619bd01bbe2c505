"""OpenAPI credentials: the AccessKey pair of an API key, and the signature nonces seen

Revision ID: 0006
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("access_key_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("access_key_secret", sa.Text(), nullable=True))
    op.create_index("ix_api_keys_access_key_id", "api_keys", ["access_key_id"], unique=True)
    op.create_table(
        "signature_nonces",
        sa.Column("access_key_id", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id", "nonce"),
    )
    op.create_index("ix_signature_nonces_expires_at", "signature_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_signature_nonces_expires_at", table_name="signature_nonces")
    op.drop_table("signature_nonces")
    op.drop_index("ix_api_keys_access_key_id", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("access_key_secret")
        batch.drop_column("access_key_id")
