"""knowledge search in PostgreSQL: BM25 statistics, rows written at ingest

Revision ID: 0017
Revises: 0015

On a PostgreSQL database where ``0015`` made the search tables (pgvector available): adds
``knowledge_chunk_search.length``, the BM25 statistics ``knowledge_term_stats`` and
``knowledge_search_stats`` with the triggers that keep them, and the trigger that deletes
a chunk's row with the chunk (replacing the foreign key); counts the statistics of the
existing rows and copies in the rows of chunks no search has synced yet (0015 added them
lazily; from here on ingestion writes them). ``knowledge_search_sync`` is dropped. The
vectors and their HNSW indexes stay. Elsewhere: nothing (``openbailian search reindex``
makes everything when pgvector arrives).
"""

from alembic import op

revision = "0017"
down_revision = "0015"  # it alters 0015's tables
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    from openbailian.knowledge.search_pg import upgrade as upgrade_search

    if connection.execute(text("SELECT to_regclass('knowledge_chunk_search')")).scalar() is None:
        return  # 0015 found no pgvector: search stays in process until `search reindex`
    upgrade_search(connection)


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS knowledge_chunks_unsearch ON knowledge_chunks")
        op.execute("DROP TABLE IF EXISTS knowledge_term_stats")
        op.execute("DROP TABLE IF EXISTS knowledge_search_stats")
        op.execute("DROP FUNCTION IF EXISTS openbailian_search_count() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS openbailian_search_unchunk() CASCADE")
