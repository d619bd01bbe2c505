"""The DashScope-native knowledge API (what LlamaIndex's DashScope integrations send), on the
wire with httpx: data-center upload → pipeline → managed ingest → retrieve → an app call
that uses the pipeline and the document; and bad input, answered in DashScope's error shape
with nothing changed."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import POSTGRES_URL, LiveServer, PostgresDatabase, make_settings

GUIDE = (
    "# Lighthouse keeping\n\n"
    "The Wrenfield lighthouse lamp is wound every evening at dusk by the keeper on duty.\n\n"
    "## Supplies\n\nParaffin for the Wrenfield lamp is delivered by boat every second Tuesday.\n"
).encode()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("native-home")
    database = PostgresDatabase(POSTGRES_URL) if POSTGRES_URL else None
    url = database.create() if database else None
    server = LiveServer(make_settings(home, url)).start()
    yield server
    server.stop()
    if database:
        database.drop()


def _headers(live: LiveServer, workspace: str = "ws1", *, bare: bool = False) -> dict[str, str]:
    key = live.key(workspace)
    return {"Authorization": key if bare else f"Bearer {key}", "X-DashScope-WorkSpace": workspace}


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == "Success" and body["request_id"], body
    return body


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"] and body["request_id"], body
    return body


def upload(live: LiveServer, name: str = "lighthouse.md", data: bytes = GUIDE, workspace: str = "ws1") -> str:
    """upload_lease → PUT → add_file → query until parsed, as DashScopeParse does; the file id."""
    headers = _headers(live, workspace)
    lease = _ok(live.http.post(
        "/api/v1/datacenter/category/default/upload_lease", headers=headers,
        json={"file_name": name, "size_bytes": len(data), "content_md5": hashlib.md5(data).hexdigest()},
    ))["data"]
    assert lease["type"] == "OSS.PreSignedUrl"
    param = lease["param"]
    assert live.http.request(param["method"], param["url"], content=data, headers=param["headers"]).status_code == 200
    added = _ok(live.http.post(
        "/api/v1/datacenter/category/default/add_file", headers=headers,
        json={"lease_id": lease["lease_id"], "parser": "DASHSCOPE_DOCMIND"},
    ))["data"]
    file_id = added["file_id"]
    deadline = time.monotonic() + 120
    while True:
        status = _ok(live.http.post(
            f"/api/v1/datacenter/category/default/file/{file_id}/query", headers=headers, json={"file_id": file_id}
        ))["data"]["status"]
        if status not in ("INIT", "PARSING"):
            assert status == "PARSE_SUCCESS", status
            return file_id
        assert time.monotonic() < deadline, "the document was not parsed in time"
        time.sleep(0.2)


def ingest(live: LiveServer, pipeline_id: str, ingestion_id: str, workspace: str = "ws1") -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        body = _ok(live.http.get(
            f"/api/v1/indices/pipeline/{pipeline_id}/managed_ingest/{ingestion_id}/status",
            headers=_headers(live, workspace),
        ))
        if body["ingestion_status"] in ("COMPLETED", "FAILED"):
            return body
        assert time.monotonic() < deadline, "the ingestion did not finish in time"
        time.sleep(0.2)


def bases(live: LiveServer, workspace: str = "ws1") -> list[dict[str, Any]]:
    return live.http.get("/manage/v1/knowledge/bases", headers=live.auth(workspace)).json()["indexes"]


def test_a_document_goes_from_upload_to_pipeline_to_retrieval_and_into_an_app_call(live: LiveServer) -> None:
    headers = _headers(live)
    file_id = upload(live)
    lease = _ok(live.http.post(
        f"/api/v1/datacenter/category/default/file/{file_id}/download_lease", headers=headers,
        json={"file_id": file_id},
    ))["data"]
    parsed = live.http.get(lease["param"]["url"])
    assert parsed.status_code == 200 and "wound every evening at dusk" in parsed.text

    created = _ok(live.http.put("/api/v1/indices/pipeline", headers=headers, json={
        "name": "lighthouse-native", "pipeline_type": "MANAGED_SHARED", "configured_transformations": [],
        "data_sources": [{"source_type": "DATA_CENTER_FILE", "component": {"doc_ids": [file_id]}}],
        "data_sinks": [{"sink_type": "ES"}],
    }))
    pipeline_id = created["id"]
    found = _ok(live.http.get("/api/v1/indices/pipeline_simple", headers=headers,
                              params={"pipeline_name": "lighthouse-native"}))
    assert found["id"] == pipeline_id
    assert pipeline_id in {b["index_id"] for b in bases(live)}  # the same base every face sees

    started = _ok(live.http.post(f"/api/v1/indices/pipeline/{pipeline_id}/managed_ingest", headers=headers))
    status = ingest(live, pipeline_id, started["ingestionId"])
    assert status["ingestion_status"] == "COMPLETED" and status["failed_docs"] == []

    answer = _ok(live.http.post(
        f"/api/v1/indices/pipeline/{pipeline_id}/retrieve", headers=_headers(live, bare=True),
        json={"query": "When is the Wrenfield lamp wound?", "rerank_top_n": 3, "enable_reranking": True},
    ))
    assert answer["nodes"], answer
    best = answer["nodes"][0]
    assert "dusk" in best["node"]["text"] and best["node"]["metadata"]["doc_id"] == file_id
    assert isinstance(best["score"], float)

    app_id = live.app()
    call = live.call(app_id, {
        "input": {"prompt": "When is the lamp wound?"},
        "parameters": {"rag_options": {"pipeline_ids": [pipeline_id], "file_ids": [file_id]}},
    })
    assert call.status_code == 200, call.text
    assert "wound every evening at dusk" in call.json()["output"]["text"]

    _ok(live.http.post(f"/api/v1/indices/pipeline/{pipeline_id}/delete", headers=headers, json={
        "data_sources": [{"source_type": "DATA_CENTER_FILE", "component": {"doc_ids": [file_id]}}],
    }))
    after = _ok(live.http.post(f"/api/v1/indices/pipeline/{pipeline_id}/retrieve", headers=headers,
                               json={"query": "When is the Wrenfield lamp wound?"}))
    assert after["nodes"] == []


def test_bad_input_is_refused_in_the_dashscope_shape_and_changes_nothing(live: LiveServer) -> None:
    headers = _headers(live)
    file_id = upload(live, "other.md")
    before = bases(live)
    own = _ok(live.http.put("/api/v1/indices/pipeline", headers=headers, json={"name": "ws1-only"}))["id"]
    before = bases(live)

    # unknown documents, another workspace's document: not found, and no pipeline made
    foreign = upload(live, "foreign.md", workspace="ws2")
    for doc_id in ("file_doesnotexist", foreign):
        _error(live.http.put("/api/v1/indices/pipeline", headers=headers, json={
            "name": "never-made", "data_sources": [{"component": {"doc_ids": [doc_id]}}],
        }), 404, "NotFound")
    # malformed bodies and wrong types
    _error(live.http.put("/api/v1/indices/pipeline", headers=headers, json={"data_sources": []}),
           400, "InvalidParameter")
    _error(live.http.put("/api/v1/indices/pipeline", headers=headers,
                         json={"name": "x", "data_sources": [{"component": {"doc_ids": "not-a-list"}}]}),
           400, "InvalidParameter")
    _error(live.http.post(f"/api/v1/indices/pipeline/{own}/retrieve", headers=headers,
                          json={"query": "x", "rerank_top_n": "many"}), 400, "InvalidParameter")
    _error(live.http.post(f"/api/v1/indices/pipeline/{own}/retrieve", headers=headers,
                          json={"query": "x", "rerank_top_n": 99}), 400, "InvalidParameter")
    # a missing field is named, even one called like a part of the request ("query")
    for body in ({}, {"rerank_top_n": 3}):
        missing = _error(live.http.post(f"/api/v1/indices/pipeline/{own}/retrieve", headers=headers, json=body),
                         400, "InvalidParameter")
        assert missing["message"].startswith("query:"), missing
    # a body that is not JSON or not an object; a bad key is reported before a bad body
    retrieve = f"/api/v1/indices/pipeline/{own}/retrieve"
    broken = _error(live.http.post(retrieve, headers={**headers, "Content-Type": "application/json"}, content=b'{"query": '),
                    400, "InvalidParameter")
    assert "not valid JSON" in broken["message"], broken
    _error(live.http.post(retrieve, headers=headers, json=["x"]), 400, "InvalidParameter")
    _error(live.http.post(retrieve, headers={"Authorization": "sk-not-a-key"}, json={}), 401, "InvalidApiKey")
    # unknown pipelines, and another workspace's pipeline: the same answer
    _error(live.http.get("/api/v1/indices/pipeline_simple", headers=headers,
                         params={"pipeline_name": "nope"}), 404, "Index.NotFound")
    theirs = _ok(live.http.put("/api/v1/indices/pipeline", headers=_headers(live, "ws2"), json={"name": "theirs"}))
    for pipeline in ("nope", theirs["id"]):
        _error(live.http.post(f"/api/v1/indices/pipeline/{pipeline}/managed_ingest", headers=headers),
               404, "Index.NotFound")
        _error(live.http.post(f"/api/v1/indices/pipeline/{pipeline}/retrieve", headers=headers,
                              json={"query": "x"}), 404, "Index.NotFound")
    _error(live.http.post(f"/api/v1/indices/pipeline/{own}/delete", headers=headers, json={
        "data_sources": [{"component": {"doc_ids": [file_id]}}]}), 404, "NotFound")  # not in this pipeline
    # no key, a wrong key, a key of another workspace than the header names
    _error(live.http.put("/api/v1/indices/pipeline", json={"name": "x"}), 401, "InvalidApiKey")
    _error(live.http.put("/api/v1/indices/pipeline", json={"name": "x"},
                         headers={"Authorization": "Bearer sk-wrong"}), 401, "InvalidApiKey")
    _error(live.http.put("/api/v1/indices/pipeline", json={"name": "x"},
                         headers={**headers, "X-DashScope-WorkSpace": "ws2"}), 403, "Workspace.AccessDenied")
    assert bases(live) == before
