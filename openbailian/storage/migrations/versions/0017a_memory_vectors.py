"""memory items' vectors in PostgreSQL (pgvector)

Revision ID: 0017a
Revises: 0017, 0004

On PostgreSQL with the pgvector extension (created by ``0015``): ``memory_item_vectors``
(see ``openbailian/memory/vectors_pg.py``) with the trigger that clears a row when its
item's embedding changes, filled from every item's stored embedding, an HNSW index per
dimension found. Without the extension, or on SQLite: nothing (recall ranks in process;
``openbailian search reindex`` makes it once pgvector is installed).
"""

from alembic import op

revision = "0017a"
down_revision = ("0017", "0004")  # pgvector's search schema, and the memory tables
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    from openbailian.memory.vectors_pg import rebuild_memory_vectors

    if connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).scalar() is None:
        return
    rebuild_memory_vectors(connection)


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS memory_item_vectors")
        op.execute("DROP FUNCTION IF EXISTS openbailian_memory_vector_clear() CASCADE")
