"""knowledge search in PostgreSQL: keyword cells (impact classes) for exact BM25 top-k

Revision ID: 0023
Revises: 0017

On a PostgreSQL database with the search tables (``0015``/``0017``): adds the generated
column ``knowledge_chunk_search.cells`` (one lexeme per term of the chunk: base, term, tf
class, length class) with its GIN index, and ``knowledge_term_cells`` (per base, term and
class pair: the chunks there), kept by the statistics trigger; existing rows get their
cells in place (the column is computed by the server as the table is rewritten) and the
cells' counts are made from them. Elsewhere: nothing (``openbailian search reindex`` makes
everything when pgvector arrives).
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
        # The statistics trigger skips the cells once their table is gone.
        op.execute("DROP INDEX IF EXISTS knowledge_chunk_search_cells")
        op.execute("ALTER TABLE IF EXISTS knowledge_chunk_search DROP COLUMN IF EXISTS cells")
        op.execute("DROP TABLE IF EXISTS knowledge_term_cells")
        op.execute("DROP FUNCTION IF EXISTS openbailian_search_uncount() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS openbailian_search_cells(text, tsvector, integer)")
