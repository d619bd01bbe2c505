"""An ingesting document's progress (chunks embedded of its total, seconds left) on a live
server: on ``/manage/v1`` and on the OpenAPI face next to what the official SDK reads, observed
while the embedder holds the document's second batch (no sleeps: the endpoint waits on an event)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_bailian20231229 import models
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.api.openapi.conftest import create_key, sdk_client
from tests.support import LiveServer, make_settings, serve_in_thread, wait_until

WORKSPACE = "ws-progress"
SECTIONS = "\n\n".join(f"# 第 {i} 节\n第 {i} 节规定了年假、报销和差旅的第 {i} 条细则。" for i in range(120))


@pytest.fixture
def second_batch_held() -> Iterator[tuple[str, list[int], threading.Event]]:
    """An /embeddings endpoint that answers the first request and holds the next ones until
    the event is set."""
    calls: list[int] = []
    release = threading.Event()

    async def embeddings(request: Request) -> JSONResponse:
        texts = (await request.json())["input"]
        calls.append(len(texts))
        if len(calls) > 1:
            await asyncio.to_thread(release.wait, 120)
        return JSONResponse({"data": [{"index": i, "embedding": [1.0, 0.0, 0.0, float(i)]} for i in range(len(texts))]})

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
    with serve_in_thread(app) as url:
        try:
            yield f"{url}/v1", calls, release
        finally:
            release.set()


@pytest.fixture
def server(tmp_path: Path, database_url: str | None, second_batch_held: Any) -> Iterator[LiveServer]:
    url, _, _ = second_batch_held
    settings = make_settings(tmp_path / "home", database_url, knowledge_embedding_base_url=url, knowledge_embedding_dim=4)
    live = LiveServer(settings).start()
    yield live
    live.stop()


def test_an_ingesting_document_shows_its_progress_and_time_left_on_every_face(server, second_batch_held):
    _, calls, release = second_batch_held
    key = create_key(server, WORKSPACE)
    auth = {"Authorization": f"Bearer {key['api_key']}"}
    index_id = server.http.post("/manage/v1/knowledge/bases", json={"name": "handbook"}, headers=auth).json()["index_id"]
    added = server.http.post(f"/manage/v1/knowledge/bases/{index_id}/files", headers=auth,
                             files=[("files", ("handbook.md", SECTIONS.encode()))])
    assert added.status_code == 201, added.text
    file_id = added.json()["files"][0]["file_id"]

    wait_until(lambda: len(calls) >= 2, "the second embedding batch")  # held there
    first = calls[0]
    document = server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=auth).json()
    assert document["status"] == "INDEX_BUILDING"
    progress = document["progress"]
    total = progress["chunks_total"]
    assert progress["chunks_embedded"] == first and total > 2 * first  # one batch done, more to come
    assert isinstance(progress["eta_seconds"], float) and progress["eta_seconds"] > 0
    listed = server.http.get(f"/manage/v1/knowledge/bases/{index_id}/files", headers=auth).json()["files"]
    assert [(f["file_id"], f["progress"]["chunks_embedded"]) for f in listed] == [(file_id, first)]

    # The OpenAPI face: the official SDK's models read the document as before (the extra field
    # does not break them), and the raw answer carries the same progress.
    sdk = sdk_client(server, bearer_token=key["api_key"])
    documents = sdk.list_index_documents(WORKSPACE, models.ListIndexDocumentsRequest(index_id=index_id)).body.data
    assert [(d.id, d.status) for d in documents.documents] == [(file_id, "RUNNING")]
    raw = server.http.get(f"/{WORKSPACE}/index/list_index_documents", params={"IndexId": index_id},
                          headers={"x-acs-bearer-token": key["api_key"]})
    assert raw.status_code == 200, raw.text
    [shown] = raw.json()["Data"]["Documents"]
    assert shown["Progress"]["ChunksEmbedded"] == first and shown["Progress"]["ChunksTotal"] == total
    assert shown["Progress"]["EtaSeconds"] > 0

    release.set()
    done = wait_until(lambda: (d := server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=auth).json())
                      ["status"] == "FILE_IS_READY" and d, "the document being ready")
    assert done["progress"] is None and done["chunks"] == total
    assert sum(calls) == total  # every chunk embedded once
    again = server.http.get(f"/{WORKSPACE}/index/list_index_documents", params={"IndexId": index_id},
                            headers={"x-acs-bearer-token": key["api_key"]}).json()["Data"]["Documents"]
    assert [(d["Status"], d["Progress"]) for d in again] == [("FINISH", None)]
