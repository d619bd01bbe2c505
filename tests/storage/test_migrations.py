"""The schema comes from Alembic migrations, and they match the models."""

from __future__ import annotations

import multiprocessing

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

import openbailian.storage.tables  # noqa: F401
from openbailian.knowledge.search_pg import TABLES as PG_SEARCH_TABLES
from openbailian.memory.vectors_pg import TABLES as PG_MEMORY_TABLES
from openbailian.storage.db import alembic_config, migrate, sync_url
from openbailian.storage.models import Base


def _modelled(name, type_, parent_names) -> bool:  # type: ignore[no-untyped-def]
    """PostgreSQL's search tables (migration 0015, pgvector types) have no model."""
    return not (type_ == "table" and name in PG_SEARCH_TABLES | PG_MEMORY_TABLES)


OPTS = {"render_as_batch": True, "include_name": _modelled}


def test_migrations_build_every_table_and_match_the_models(settings):
    url = settings.resolved_database_url
    migrate(url)
    migrate(url)  # idempotent
    engine = create_engine(sync_url(url))
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts=OPTS)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()



def _migrate_in_child(url: str) -> str:
    try:
        migrate(url)
    except Exception as error:  # reported to the parent, which asserts on it
        return f"{type(error).__name__}: {error}"
    return "ok"


def test_processes_starting_together_migrate_one_fresh_database(settings):
    """Several API processes started at once on a new database: all come up, one schema."""
    url = settings.resolved_database_url
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        outcomes = pool.map(_migrate_in_child, [url] * 4)
    assert outcomes == ["ok"] * 4
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            heads = MigrationContext.configure(connection).get_current_heads()
            assert compare_metadata(MigrationContext.configure(connection, opts=OPTS), Base.metadata) == []
    finally:
        engine.dispose()
    assert set(heads) == set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
