"""session messages: the index on ``session_id`` alone dropped

Revision ID: 0027
Revises: 0001 (it alters 0001's table)

``session_messages`` had two indexes led by ``session_id``: ``ix_session_messages_session_id``
and the unique ``(session_id, seq)``. Every query by session (a turn's history, the next
``seq``, the cascade when a session is deleted) is served by the unique one, in ``seq``
order; the other was one more B-tree insert per stored message, nothing else.
"""

from alembic import op

revision = "0027"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_session_messages_session_id", table_name="session_messages")


def downgrade() -> None:
    op.create_index("ix_session_messages_session_id", "session_messages", ["session_id"], unique=False)
