"""The schema comes from Alembic migrations, and they match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import openbailian.storage.tables  # noqa: F401
from openbailian.storage.db import migrate, sync_url
from openbailian.storage.models import Base


def test_migrations_build_every_table_and_match_the_models(settings):
    url = settings.resolved_database_url
    migrate(url)
    migrate(url)  # idempotent
    engine = create_engine(sync_url(url))
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"render_as_batch": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()

