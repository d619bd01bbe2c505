"""The data center and index families through the official SDK (unmodified), signed and with
a bearer token: the spec's session-file flow into an application call, a knowledge base built
from a data-center document into an application call, categories, and bad input answered in
the envelope with nothing changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dashscope
import httpx
import pytest
from alibabacloud_bailian20231229 import models
from alibabacloud_bailian20231229.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from dashscope import Application

from tests.api.openapi.conftest import WORKSPACE, OpenApi, create_key

GUIDE = (
    "# Lighthouse keeping\n\n"
    "The Wrenfield lighthouse lamp is wound every evening at dusk by the keeper on duty.\n\n"
    "## Supplies\n\n"
    "Paraffin for the Wrenfield lamp is delivered by boat every second Tuesday, weather permitting.\n\n"
    "## Visitors\n\n"
    "Visitors may climb the tower on Sundays between ten and noon, never in a storm.\n"
).encode()
DEADLINE = 120
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def refused(call, status: int, code: str, mentions: str = "") -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientException) as caught:
        call()
    error = caught.value
    assert (error.status_code, error.code) == (status, code), error.data
    assert error.data["RequestId"] and error.data["Success"] is False and error.data["Status"] == str(status)
    assert mentions in error.data["Message"], error.data["Message"]


def upload(
    sdk: Client, name: str, data: bytes, *, category: str = "default", kind: str | None = None,
    tags: list[str] | None = None, workspace: str = WORKSPACE,
) -> str:
    """ApplyFileUploadLease → PUT the bytes → AddFile; the file id."""
    lease = sdk.apply_file_upload_lease(category, workspace, models.ApplyFileUploadLeaseRequest(
        file_name=name, md_5=hashlib.md5(data).hexdigest(), size_in_bytes=str(len(data)), category_type=kind,
    )).body.data
    assert lease.type == "HTTP"
    put = httpx.request(lease.param.method, lease.param.url, content=data, headers=lease.param.headers)
    assert put.status_code == 200, put.text
    added = sdk.add_file(workspace, models.AddFileRequest(
        lease_id=lease.file_upload_lease_id, parser="DASHSCOPE_DOCMIND", category_id=category, category_type=kind,
        tags=tags,
    )).body.data
    return added.file_id


def described(sdk: Client, file_id: str, until: set[str]) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        data = sdk.describe_file(WORKSPACE, file_id, models.DescribeFileRequest()).body.data
        if data.status in until:
            return data
        assert time.monotonic() < deadline, f"file {file_id} stayed {data.status}"
        time.sleep(0.2)


def job_done(sdk: Client, index_id: str, job_id: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        data = sdk.get_index_job_status(WORKSPACE, models.GetIndexJobStatusRequest(index_id=index_id, job_id=job_id)).body.data
        if data.status in ("COMPLETED", "FAILED"):
            return data
        assert data.status in ("PENDING", "RUNNING")
        assert time.monotonic() < deadline, f"job {job_id} stayed {data.status}"
        time.sleep(0.2)


def context_of(response: Any) -> str:
    """What the echo model was given: the system message holds the retrieved passages."""
    assert response.status_code == 200, response.message
    return json.loads(response.output.text)["messages"][0]["content"]


def test_the_spec_session_file_flow_reaches_an_application_call(
    openapi: OpenApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = openapi.signed
    file_id = upload(sdk, "lighthouse.md", GUIDE, kind="SESSION_FILE")
    assert file_id.startswith("file_session_")
    ready = described(sdk, file_id, {"FILE_IS_READY", "PARSE_FAILED", "SAFE_CHECK_FAILED", "INDEX_BUILDING_FAILED"})
    assert ready.status == "FILE_IS_READY" and ready.parse_error_message is None

    monkeypatch.setattr(dashscope, "base_http_api_url", openapi.server.base_http_api_url)
    app_id = openapi.server.app(WORKSPACE, file_parsing=True)
    response = Application.call(
        api_key=openapi.credentials["api_key"], app_id=app_id, prompt="When is the lamp wound?",
        rag_options={"session_file_ids": [file_id]},
    )
    assert "wound every evening at dusk" in context_of(response)


def test_a_knowledge_base_built_through_the_sdk_answers_an_application_call(
    sdk: Client, openapi: OpenApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = upload(sdk, "lighthouse.md", GUIDE, tags=["coast"])  # CategoryType defaults to UNSTRUCTURED
    assert file_id.startswith("file_") and not file_id.startswith("file_session_")
    parsed = described(sdk, file_id, {"PARSE_SUCCESS", "PARSE_FAILED"})
    assert parsed.status == "PARSE_SUCCESS", parsed.parse_error_message
    assert (parsed.file_name, parsed.file_type, parsed.size_in_bytes, parsed.category_id) == (
        "lighthouse.md", "md", len(GUIDE), "default"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", parsed.create_time)
    assert httpx.get(parsed.origin_file_download_url).content == GUIDE
    assert "delivered by boat every second Tuesday" in httpx.get(parsed.parse_result_download_url).text
    forged = parsed.origin_file_download_url.replace("Signature=", "Signature=0")
    assert httpx.get(forged).status_code == 403

    listed = sdk.list_file(WORKSPACE, models.ListFileRequest(category_id="default", file_ids=[file_id])).body.data
    assert [f.file_id for f in listed.file_list] == [file_id] and listed.total_count == 1

    index_id = sdk.create_index(WORKSPACE, models.CreateIndexRequest(
        name="lighthouse", structure_type="unstructured", sink_type="BUILT_IN", source_type="DATA_CENTER_FILE",
        document_ids=[file_id], chunk_size=120, overlap_size=20, rerank_model_name="gte-rerank-hybrid",
    )).body.data.id
    job = sdk.submit_index_job(WORKSPACE, models.SubmitIndexJobRequest(index_id=index_id)).body.data
    assert job.index_id == index_id
    done = job_done(sdk, index_id, job.id)
    assert done.status == "COMPLETED"
    assert [(d.doc_id, d.doc_name, d.status) for d in done.documents] == [(file_id, "lighthouse.md", "FINISH")]

    nodes = sdk.retrieve(WORKSPACE, models.RetrieveRequest(
        index_id=index_id, query="When does the paraffin arrive?", rerank_top_n=2, enable_reranking=False,
    )).body.data.nodes
    assert nodes and "every second Tuesday" in nodes[0].text and nodes[0].metadata["doc_id"] == file_id
    assert len(nodes[0].text) <= 120  # the index's own ChunkSize
    def retrieved(filters: list[dict[str, str]]) -> list[Any]:
        return sdk.retrieve(WORKSPACE, models.RetrieveRequest(
            index_id=index_id, query="paraffin", search_filters=filters)).body.data.nodes

    assert retrieved([{"doc_id": file_id}]) and retrieved([{"tags": "coast"}])
    assert retrieved([{"tags": "inland"}]) == []

    indices = sdk.list_indices(WORKSPACE, models.ListIndicesRequest()).body.data
    [shown] = [i for i in indices.indices if i.id == index_id]
    assert (shown.name, shown.chunk_size, shown.overlap_size, shown.document_ids) == ("lighthouse", 120, 20, [file_id])
    assert shown.rerank_model_name == "gte-rerank-hybrid"
    documents = sdk.list_index_documents(WORKSPACE, models.ListIndexDocumentsRequest(index_id=index_id)).body.data
    assert [(d.id, d.status, d.document_type) for d in documents.documents] == [(file_id, "FINISH", "md")]
    manage = openapi.server.http.get(
        "/manage/v1/knowledge/bases", headers={"Authorization": f"Bearer {openapi.credentials['api_key']}"}
    ).json()["indexes"]
    assert index_id in {b["index_id"] for b in manage}  # the same base every face sees

    monkeypatch.setattr(dashscope, "base_http_api_url", openapi.server.base_http_api_url)
    app_id = openapi.server.app(WORKSPACE)
    response = Application.call(
        api_key=openapi.credentials["api_key"], app_id=app_id, prompt="When does the paraffin arrive?",
        rag_options={"pipeline_ids": [index_id], "file_ids": [file_id]},
    )
    assert "every second Tuesday" in context_of(response)

    deleted = sdk.delete_index_document(
        WORKSPACE, models.DeleteIndexDocumentRequest(index_id=index_id, document_ids=[file_id])
    ).body.data
    assert deleted.deleted_document == [file_id]
    again = sdk.retrieve(WORKSPACE, models.RetrieveRequest(index_id=index_id, query="paraffin")).body.data
    assert again.nodes == []
    assert sdk.delete_index(WORKSPACE, models.DeleteIndexRequest(index_id=index_id)).body.success
    assert index_id not in {i.id for i in sdk.list_indices(WORKSPACE, models.ListIndicesRequest()).body.data.indices}
    # the data-center document itself stays until it is deleted
    assert sdk.delete_file(file_id, WORKSPACE, models.DeleteFileRequest()).body.data.file_id == file_id
    refused(lambda: sdk.describe_file(WORKSPACE, file_id, models.DescribeFileRequest()), 404, "NotFound")


def test_categories_hold_documents_and_an_index_takes_a_whole_category(openapi: OpenApi) -> None:
    sdk = openapi.bearer
    category = sdk.add_category(WORKSPACE, models.AddCategoryRequest(
        category_name="manuals", category_type="UNSTRUCTURED",
    )).body.data
    listed = sdk.list_category(WORKSPACE, models.ListCategoryRequest(category_type="UNSTRUCTURED")).body.data
    assert [(c.category_id, c.is_default) for c in listed.category_list] == [("default", True), (category.category_id, False)]

    file_id = upload(sdk, "visitors.md", GUIDE, category=category.category_id)
    assert described(sdk, file_id, {"PARSE_SUCCESS", "PARSE_FAILED"}).category_id == category.category_id
    index_id = sdk.create_index(WORKSPACE, models.CreateIndexRequest(
        name="by-category", structure_type="unstructured", sink_type="BUILT_IN",
        source_type="DATA_CENTER_CATEGORY", category_ids=[category.category_id],
    )).body.data.id
    job = sdk.submit_index_job(WORKSPACE, models.SubmitIndexJobRequest(index_id=index_id)).body.data
    assert [d.doc_id for d in job_done(sdk, index_id, job.id).documents] == [file_id]

    second = upload(sdk, "second.md", b"The keeper's cat is called Fennel.\n", category=category.category_id)
    described(sdk, second, {"PARSE_SUCCESS"})
    added = sdk.submit_index_add_documents_job(WORKSPACE, models.SubmitIndexAddDocumentsJobRequest(
        index_id=index_id, source_type="DATA_CENTER_FILE", document_ids=[second],
    )).body.data
    assert job_done(sdk, index_id, added.id).status == "COMPLETED"
    nodes = sdk.retrieve(WORKSPACE, models.RetrieveRequest(index_id=index_id, query="What is the cat called?")).body.data.nodes
    assert any("Fennel" in n.text for n in nodes)

    refused(lambda: sdk.delete_category(category.category_id, WORKSPACE, models.DeleteCategoryRequest()), 409, "Conflict", "delete them first")
    refused(lambda: sdk.delete_category("default", WORKSPACE, models.DeleteCategoryRequest()), 400, "InvalidParameter", "default")
    for each in (file_id, second):
        sdk.delete_file(each, WORKSPACE, models.DeleteFileRequest())
    assert sdk.delete_category(category.category_id, WORKSPACE, models.DeleteCategoryRequest()).body.data.category_id == category.category_id


def test_bad_input_is_refused_in_the_envelope_and_changes_nothing(openapi: OpenApi) -> None:
    sdk = openapi.signed
    file_id = upload(sdk, "keep.md", GUIDE)
    described(sdk, file_id, {"PARSE_SUCCESS"})
    index_id = sdk.create_index(WORKSPACE, models.CreateIndexRequest(
        name="keep", structure_type="unstructured", sink_type="BUILT_IN", source_type="DATA_CENTER_FILE",
        document_ids=[file_id],
    )).body.data.id

    def store() -> tuple[Any, ...]:
        indices = sdk.list_indices(WORKSPACE, models.ListIndicesRequest()).body.data
        files = sdk.list_file(WORKSPACE, models.ListFileRequest(category_id="default")).body.data
        return (
            [(i.id, i.name, i.document_ids, i.chunk_size) for i in indices.indices],
            [(f.file_id, f.status, f.tags) for f in files.file_list],
        )

    before = store()
    create = models.CreateIndexRequest
    # unknown ids, and another workspace's ids (through its own key and path): not found alike
    other = create_key(openapi.server, "ws-dc-other")
    theirs = openapi.client(credentials=other)
    foreign_index = theirs.create_index("ws-dc-other", create(
        name="theirs", structure_type="unstructured", sink_type="BUILT_IN")).body.data.id
    for unknown in ("nope", foreign_index):
        refused(lambda u=unknown: sdk.submit_index_job(WORKSPACE, models.SubmitIndexJobRequest(index_id=u)),
                404, "Index.NotFound")
        refused(lambda u=unknown: sdk.retrieve(WORKSPACE, models.RetrieveRequest(index_id=u, query="x")),
                404, "Index.NotFound")
        refused(lambda u=unknown: sdk.delete_index(WORKSPACE, models.DeleteIndexRequest(index_id=u)),
                404, "Index.NotFound")
        refused(lambda u=unknown: sdk.list_index_documents(WORKSPACE, models.ListIndexDocumentsRequest(index_id=u)),
                404, "Index.NotFound")
    foreign_file = upload(theirs, "theirs.md", GUIDE, workspace="ws-dc-other")
    for unknown in ("file_nope", foreign_file):
        refused(lambda u=unknown: sdk.create_index(WORKSPACE, create(
            name="x", structure_type="unstructured", sink_type="BUILT_IN", source_type="DATA_CENTER_FILE",
            document_ids=[u])), 404, "NotFound", unknown)
    refused(lambda: sdk.get_index_job_status(WORKSPACE, models.GetIndexJobStatusRequest(index_id=index_id, job_id="job_nope")),
            404, "NotFound")
    refused(lambda: sdk.delete_index_document(WORKSPACE, models.DeleteIndexDocumentRequest(
        index_id=index_id, document_ids=["file_nope"])), 404, "NotFound")
    refused(lambda: sdk.describe_file(WORKSPACE, "file_nope", models.DescribeFileRequest()), 404, "NotFound")
    refused(lambda: sdk.list_file(WORKSPACE, models.ListFileRequest(category_id="cate_nope")), 404, "NotFound")

    # malformed JSON-string parameters and wrong types, sent as the SDK sends strings
    bearer = {"x-acs-bearer-token": openapi.credentials["api_key"]}
    base = {"Name": "x", "StructureType": "unstructured", "SinkType": "BUILT_IN", "SourceType": "DATA_CENTER_FILE"}
    for raw in ("[not json", '{"a": 1}', "[1, 2]"):
        answer = openapi.server.http.post(f"/{WORKSPACE}/index/create", params={**base, "DocumentIds": raw},
                                          headers=bearer)
        assert answer.status_code == 400 and answer.json()["Code"] == "InvalidParameter", answer.text
        assert "DocumentIds" in answer.json()["Message"] and answer.json()["RequestId"]
    refused(lambda: sdk.create_index(WORKSPACE, create(name="x", structure_type="unstructured", sink_type="BUILT_IN",
                                                        source_type="DATA_CENTER_FILE", document_ids="file_x")),
            400, "InvalidParameter", "DocumentIds")
    refused(lambda: sdk.create_index(WORKSPACE, create(name="x", structure_type="unstructured", sink_type="BUILT_IN",
                                                        chunk_size="big")), 400, "InvalidParameter", "ChunkSize")
    refused(lambda: sdk.create_index(WORKSPACE, create(name="x", structure_type="unstructured", sink_type="BUILT_IN",
                                                        chunk_size=100, overlap_size=100)), 400, "InvalidParameter", "OverlapSize")
    refused(lambda: sdk.create_index(WORKSPACE, create(name="x", structure_type="graph", sink_type="BUILT_IN")),
            400, "InvalidParameter", "StructureType")
    refused(lambda: sdk.create_index(WORKSPACE, create(structure_type="unstructured", sink_type="BUILT_IN")),
            400, "InvalidParameter", "Name")
    refused(lambda: sdk.retrieve(WORKSPACE, models.RetrieveRequest(index_id=index_id, query="x", rerank_top_n=50)),
            400, "InvalidParameter", "RerankTopN")
    refused(lambda: sdk.retrieve(WORKSPACE, models.RetrieveRequest(index_id=index_id, query="x", enable_reranking="maybe")),
            400, "InvalidParameter", "EnableReranking")
    answer = openapi.server.http.post(f"/{WORKSPACE}/index/retrieve", headers=bearer,
                                      params={"IndexId": index_id, "Query": "x", "SearchFilters": '["tags"]'})
    assert answer.status_code == 400 and "SearchFilters" in answer.json()["Message"], answer.text
    refused(lambda: sdk.apply_file_upload_lease("default", WORKSPACE, models.ApplyFileUploadLeaseRequest(
        file_name="a.md", md_5="0" * 32, size_in_bytes="ten")), 400, "InvalidParameter", "SizeInBytes")
    refused(lambda: sdk.apply_file_upload_lease("default", WORKSPACE, models.ApplyFileUploadLeaseRequest(
        file_name="a.md", md_5="0" * 32, size_in_bytes="10", category_type="TABLE")), 400, "InvalidParameter", "CategoryType")
    refused(lambda: sdk.apply_file_upload_lease("cate_nope", WORKSPACE, models.ApplyFileUploadLeaseRequest(
        file_name="a.md", md_5="0" * 32, size_in_bytes="10")), 404, "NotFound", "cate_nope")
    refused(lambda: sdk.add_file(WORKSPACE, models.AddFileRequest(lease_id="nope", parser="DASHSCOPE_DOCMIND",
                                                                  category_id="default")), 404, "NotFound")
    refused(lambda: sdk.add_category(WORKSPACE, models.AddCategoryRequest(category_name="bad name!",
                                                                          category_type="UNSTRUCTURED")),
            400, "InvalidParameter", "CategoryName")
    # a file of another workspace, asked for through this workspace's path: as if it did not exist
    refused(lambda: sdk.describe_file(WORKSPACE, foreign_file, models.DescribeFileRequest()), 404,
            "NotFound", "does not exist")
    assert store() == before


def test_the_sdk_knowledge_example_runs(openapi: OpenApi) -> None:
    """examples/openapi_knowledge.py, unchanged, with only its environment set."""
    server = openapi.server
    env = {
        **os.environ,
        "BAILIAN_ENDPOINT": f"127.0.0.1:{server.port}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": openapi.credentials["access_key_id"],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": openapi.credentials["access_key_secret"],
        "BAILIAN_WORKSPACE_ID": WORKSPACE,
        "BAILIAN_APP_ID": server.app(WORKSPACE),
        "DASHSCOPE_API_KEY": openapi.credentials["api_key"],
        "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "openapi_knowledge.py")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert re.search(r"document file_\w+ lighthouse\.md: FINISH", result.stdout), result.stdout
    assert "retrieved (" in result.stdout
    answer = json.loads(result.stdout[result.stdout.index('{"messages"'):])  # the echo model's context
    assert "wound every evening at dusk" in answer["messages"][0]["content"]


def test_a_base_made_with_the_management_api_is_an_index_of_the_sdk(openapi: OpenApi) -> None:
    """The same rows from every face: /manage/v1 makes a base and uploads a document; the SDK
    lists, searches and deletes it."""
    server, sdk = openapi.server, openapi.bearer
    auth = {"Authorization": f"Bearer {openapi.credentials['api_key']}"}
    made = server.http.post("/manage/v1/knowledge/bases", json={"name": "from-manage"}, headers=auth)
    assert made.status_code == 201, made.text
    index_id = made.json()["index_id"]
    added = server.http.post(f"/manage/v1/knowledge/bases/{index_id}/files", headers=auth,
                             files=[("files", ("guide.md", GUIDE))])
    assert added.status_code == 201, added.text
    document_id = added.json()["files"][0]["file_id"]
    deadline = time.monotonic() + DEADLINE
    while (status := server.http.get(f"/manage/v1/knowledge/files/{document_id}", headers=auth).json()["status"]) not in (
        "FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED"
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status == "FILE_IS_READY"

    [shown] = [i for i in sdk.list_indices(WORKSPACE, models.ListIndicesRequest()).body.data.indices if i.id == index_id]
    assert (shown.name, shown.document_ids) == ("from-manage", [document_id])
    documents = sdk.list_index_documents(WORKSPACE, models.ListIndexDocumentsRequest(index_id=index_id)).body.data
    assert [(d.id, d.status) for d in documents.documents] == [(document_id, "FINISH")]
    nodes = sdk.retrieve(WORKSPACE, models.RetrieveRequest(index_id=index_id, query="paraffin delivery")).body.data.nodes
    assert nodes and nodes[0].metadata["doc_id"] == document_id
    sdk.delete_index(WORKSPACE, models.DeleteIndexRequest(index_id=index_id))
    assert server.http.get(f"/manage/v1/knowledge/bases/{index_id}", headers=auth).status_code == 404


def test_an_index_refuses_an_image_document_the_data_center_reads(openapi: OpenApi) -> None:
    """The data center takes images (read by OCR); a knowledge base takes the documented document
    types only, so importing the image is refused in the envelope and the index stays empty."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.new("RGB", (900, 120), "white")
    ImageDraw.Draw(picture).text((30, 40), "Wrenfield tide table", fill="black", font=ImageFont.load_default(size=40))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    sdk = openapi.bearer
    file_id = upload(sdk, "tides.png", buffer.getvalue())
    assert described(sdk, file_id, {"PARSE_SUCCESS", "PARSE_FAILED"}).status == "PARSE_SUCCESS"
    index_id = sdk.create_index(WORKSPACE, models.CreateIndexRequest(
        name="pictures", structure_type="unstructured", sink_type="BUILT_IN", source_type="DATA_CENTER_FILE",
        document_ids=[file_id],
    )).body.data.id
    refused(lambda: sdk.submit_index_job(WORKSPACE, models.SubmitIndexJobRequest(index_id=index_id)),
            400, "InvalidParameter", "Unsupported file type '.png'")
    documents = sdk.list_index_documents(WORKSPACE, models.ListIndexDocumentsRequest(index_id=index_id)).body.data
    assert documents.documents == [] or documents.documents is None
    sdk.delete_index(WORKSPACE, models.DeleteIndexRequest(index_id=index_id))
    sdk.delete_file(file_id, WORKSPACE, models.DeleteFileRequest())
