"""knowledge search in PostgreSQL: the keyword cells out of the search table; no tsv index

Revision ID: 0024
Revises: 0023

On a PostgreSQL database with the search tables:

- a database that ran the first form of ``0023`` (``knowledge_chunk_search.cells``, a stored
  generated column under a GIN index) gets ``0023``'s present layout: ``knowledge_chunk_cells``
  is made and filled from that column, then the column is dropped (with its index).
  PostgreSQL drops a column without rewriting the table (the dropped values' space is reused
  as rows are rewritten), so the search table's HNSW indexes stay as they are;
- the GIN index over ``knowledge_chunk_search.tsv`` (``0015``/``0017``) is dropped: since
  ``0023`` every keyword pass finds its chunks through the cells' index and reads a row's
  ``tsv`` only once found, so no query uses it, and it cost every ingested chunk a GIN update
  (80 MB at 1M chunks).

Not folded into ``0023``: that revision is recorded as applied in such databases, so only a
new revision reaches them. Elsewhere: nothing. The downgrade builds the tsv index again (the
cells stay in their table, ``0023``'s layout).
"""

from alembic import op

revision = "0024"
down_revision = "0023"  # it alters 0023's tables
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    from openbailian.knowledge.search_pg import ensure_schema, fill_cells

    if connection.execute(text("SELECT to_regclass('knowledge_chunk_search')")).scalar() is None:
        return  # 0015 found no pgvector: search stays in process until `search reindex`
    column = connection.execute(text(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'knowledge_chunk_search' AND column_name = 'cells'"
    )).scalar()
    if column:
        ensure_schema(connection)  # the cells' table and the trigger that writes it
        fill_cells(connection, "s.cells")
        connection.execute(text("ALTER TABLE knowledge_chunk_search DROP COLUMN cells"))
        connection.execute(text("ANALYZE knowledge_chunk_cells"))
    connection.execute(text("DROP INDEX IF EXISTS knowledge_chunk_search_tsv"))


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    if connection.execute(text("SELECT to_regclass('knowledge_chunk_search')")).scalar() is not None:
        op.execute("CREATE INDEX IF NOT EXISTS knowledge_chunk_search_tsv ON knowledge_chunk_search USING gin (tsv)")
