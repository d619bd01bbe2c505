"""Shared fixtures; the helpers behind them are in ``tests/support.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openbailian.config import Settings
from tests.support import LOCAL_MODEL_BUDGET, POSTGRES_URL, LiveServer, PostgresDatabase, make_settings


@pytest.fixture
def database_url() -> Iterator[str | None]:
    """None (SQLite in the test's home) or a fresh PostgreSQL database."""
    if not POSTGRES_URL:
        yield None
        return
    database = PostgresDatabase(POSTGRES_URL)
    yield database.create()
    database.drop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return make_settings(tmp_path / "home", database_url)


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(settings).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the whole run with the bundled local model loaded (slow tests)."""
    home = tmp_path_factory.mktemp("local-home")
    database = PostgresDatabase(POSTGRES_URL) if POSTGRES_URL else None
    url = database.create() if database else None
    live = LiveServer(make_settings(
        home, url, default_model="local", preload_models=["local"], model_timeout_seconds=LOCAL_MODEL_BUDGET
    )).start()
    yield live
    live.stop()
    if database:
        database.drop()
