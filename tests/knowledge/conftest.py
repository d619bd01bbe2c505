"""Fixtures: a corpus made in the test, the real embedder (loaded once), a KnowledgeSystem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openbailian.knowledge.e5onnx import OnnxE5Embedder
from tests.knowledge.corpus import make_docx, make_pdf, make_xlsx


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "corpus"
    folder.mkdir()
    return {
        "phones": make_docx(folder / "百炼系列手机产品介绍.docx"),
        "hr": make_pdf(folder / "hr_policy.pdf"),
        "prices": make_xlsx(folder / "价格表.xlsx"),
    }


@pytest.fixture(scope="session")
def onnx_embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnnxE5Embedder]:
    """The default bundled model, built and loaded once for the whole run."""
    yield OnnxE5Embedder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def embedder(onnx_embedder: OnnxE5Embedder) -> Iterator[OnnxE5Embedder]:
    yield onnx_embedder


@pytest.fixture
async def knowledge(settings, embedder):  # type: ignore[no-untyped-def]
    """A migrated database and a KnowledgeSystem on it (no server, worker not started)."""
    import asyncio

    from openbailian.knowledge.system import KnowledgeSystem
    from openbailian.storage.db import Database, migrate

    settings.home.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate, settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    system = KnowledgeSystem.from_settings(db, settings, embedder=embedder)
    yield system
    await system.aclose()
    await db.dispose()
