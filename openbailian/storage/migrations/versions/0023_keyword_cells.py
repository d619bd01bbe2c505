"""knowledge search in PostgreSQL: keyword cells (impact classes) for exact BM25 top-k

Revision ID: 0023
Revises: 0017

On a PostgreSQL database with the search tables (``0015``/``0017``): adds
``knowledge_chunk_cells`` (one row per chunk: its cells, one lexeme per term — base, term,
tf class, length class — under a GIN index) and ``knowledge_term_cells`` (per base, term and
class pair: the chunks there), both kept by the statistics trigger, and fills them from the
existing search rows. Elsewhere: nothing (``openbailian search reindex`` makes everything
when pgvector arrives).

The cells are a table of their own, not a column of ``knowledge_chunk_search``: a column
computed for the existing rows (``GENERATED ALWAYS AS ... STORED``, as this revision first
did) rewrites that whole table and rebuilds every index on it, the HNSW indexes included
(47 minutes at 1M chunks on the 2-core benchmark machine). Here the search table is only
read, its indexes are untouched; the cells' table is filled, then its GIN index is built.
A database that ran the first form of this revision is brought to this one by ``0024``.
"""

from alembic import op

revision = "0023"
down_revision = "0017"  # it alters 0017's tables and trigger
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    from openbailian.knowledge.search_pg import add_cells

    if connection.execute(text("SELECT to_regclass('knowledge_chunk_search')")).scalar() is None:
        return  # 0015 found no pgvector: search stays in process until `search reindex`
    add_cells(connection)


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        # The statistics trigger skips the cells once their tables are gone.
        op.execute("DROP FUNCTION IF EXISTS openbailian_search_uncells() CASCADE")
        op.execute("DROP TABLE IF EXISTS knowledge_chunk_cells")
        op.execute("DROP TABLE IF EXISTS knowledge_term_cells")
        op.execute("DROP FUNCTION IF EXISTS openbailian_search_uncount() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS openbailian_search_cells(text, tsvector, integer)")
