"""knowledge search in PostgreSQL: pgvector vectors and tsvector keywords of every chunk

Revision ID: 0015
Revises: 0002

On PostgreSQL with the pgvector extension available: creates ``knowledge_chunk_search``
(see ``openbailian/knowledge/search_pg.py``; the schema it makes is today's, with what
``0017`` added) and moves every existing chunk's vector and terms there, with an HNSW
index per vector dimension found.
Without the extension (not installed on the server, or not permitted to this user) it
logs a warning and changes nothing: search stays in process until ``openbailian search reindex``
is run after installing pgvector. On SQLite: nothing (the in-process index is used).
"""

import logging

from alembic import op

revision = "0015"
down_revision = "0002"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    from openbailian.knowledge.search_pg import rebuild

    available = connection.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar()
    if not available:
        logger.warning("pgvector is not installed on this PostgreSQL server: knowledge search stays in process")
        return
    try:
        with connection.begin_nested():
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except Exception as error:  # noqa: BLE001 - e.g. not permitted to this user
        logger.warning("cannot create the pgvector extension (%s): knowledge search stays in process", error)
        return
    rebuild(connection)


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS knowledge_chunk_search")
        op.execute("DROP TABLE IF EXISTS knowledge_search_sync")
