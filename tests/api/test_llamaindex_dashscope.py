"""LlamaIndex's DashScope integrations, from PyPI and unmodified, against a live server:
``DashScopeParse`` uploads and parses a document, ``DashScopeCloudIndex.from_documents``
builds a pipeline from it, its retriever finds the passage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import LiveServer

GUIDE = (
    "# Lighthouse keeping\n\n"
    "The Wrenfield lighthouse lamp is wound every evening at dusk by the keeper on duty.\n\n"
    "## Supplies\n\nParaffin for the Wrenfield lamp is delivered by boat every second Tuesday.\n"
)


def test_an_index_built_with_dashscope_cloud_index_answers_its_retriever(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_index.indices.managed.dashscope import DashScopeCloudIndex
    from llama_index.readers.dashscope.base import DashScopeParse

    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.url)
    monkeypatch.setenv("DASHSCOPE_API_KEY", server.key("ws1"))
    monkeypatch.setenv("DASHSCOPE_WORKSPACE_ID", "ws1")
    guide = tmp_path / "lighthouse.md"
    guide.write_text(GUIDE, encoding="utf-8")

    documents = DashScopeParse(check_interval=1, verbose=False, show_progress=False, ignore_errors=False).load_data(
        str(guide)
    )
    assert len(documents) == 1 and documents[0].id_.startswith("file_")
    assert "wound every evening at dusk" in documents[0].text

    index = DashScopeCloudIndex.from_documents(documents, "lighthouse-llama", verbose=False)
    assert index is not None
    nodes = index.as_retriever(rerank_top_n=2).retrieve("When is the Wrenfield lamp wound?")
    assert nodes and "dusk" in nodes[0].node.get_content()
    assert nodes[0].node.metadata["doc_id"] == documents[0].id_

    bases = server.http.get("/manage/v1/knowledge/bases", headers=server.auth("ws1")).json()["indexes"]
    assert [b["name"] for b in bases] == ["lighthouse-llama"]
