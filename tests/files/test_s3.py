"""Knowledge documents and session files in a real S3 server (moto's standalone server):
uploads by presigned URL straight to the bucket, AddFile's size/MD5 check on the stored
object, answers from the file, and objects removed on delete, refusal and expiry."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openbailian.files.system import SessionFiles
from openbailian.storage.models import utcnow
from tests.files.conftest import add, call, lease, make_docx, shift_clock, wait_final
from tests.files.s3support import BUCKET, PREFIX, bucket_keys, client, s3_settings
from tests.support import POSTGRES_URL, LiveServer, PostgresDatabase, make_settings


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("s3-home")
    database = PostgresDatabase(POSTGRES_URL) if POSTGRES_URL else None
    url = database.create() if database else None
    server = LiveServer(make_settings(home, url, files_sweep_seconds=0.2, **s3_settings(s3_endpoint))).start()
    yield server
    server.stop()
    if database:
        database.drop()


@pytest.fixture
def files(live: LiveServer) -> Iterator[SessionFiles]:
    system = live.runtime.files
    yield system
    system.clock = utcnow


def presigned_upload(live: LiveServer, name: str, data: bytes, workspace: str = "ws1",
                     body: bytes | None = None) -> dict[str, Any]:
    """Lease for ``data``, PUT ``body`` (default: ``data``) to the lease's URL; the lease."""
    granted = lease(live, name, data, workspace)
    assert granted.status_code == 200, granted.text
    grant = granted.json()["Data"]
    param = grant["Param"]
    response = live.http.put(param["Url"], content=data if body is None else body, headers=param["Headers"])
    assert response.status_code == 200, response.text
    return grant


def test_a_session_file_uploaded_by_presigned_url_is_answered_from(live, s3_endpoint, tmp_path: Path) -> None:
    data = make_docx(tmp_path / "phones.docx")
    grant = presigned_upload(live, "phones.docx", data)
    url = grant["Param"]["Url"]
    assert url.startswith(f"{s3_endpoint}/{BUCKET}/{PREFIX}/session/ws1/") and "X-Amz-Signature=" in url
    assert not url.startswith(live.url)  # the bytes did not pass through the API process
    added = add(live, grant["FileUploadLeaseId"])
    assert added.status_code == 200, added.text
    file_id = added.json()["Data"]["FileId"]
    assert wait_final(live, file_id)["Status"] == "FILE_IS_READY"
    keys = bucket_keys(s3_endpoint)
    assert any(k.startswith(f"{PREFIX}/session/ws1/{grant['FileUploadLeaseId']}") for k in keys)
    assert any(k.startswith(f"{PREFIX}/knowledge/files/") for k in keys)  # the parsed copy
    assert not any((live.settings.home / "objects").rglob("*.docx"))

    app_id = live.app(file_parsing=True)
    response = live.call(app_id, {
        "input": {"prompt": "请根据以下文件帮我推荐一款3000元以下的手机"},
        "parameters": {"rag_options": {"session_file_ids": [file_id]}},
    })
    assert response.status_code == 200, response.text
    system = json.loads(response.json()["output"]["text"])["messages"][0]["content"]
    assert "通义 Vivid 7" in system and "2999元" in system

    assert call(live, "DeleteFile", {"FileId": file_id}).status_code == 200
    assert not {k for k in bucket_keys(s3_endpoint) - keys} and not (keys & bucket_keys(s3_endpoint))


def test_presigned_urls_are_signed_for_the_public_endpoint_and_accepted_there(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> None:
    # The API reaches the store at 127.0.0.1, clients at "localhost" (as minio:9000 inside Compose
    # and the host's name outside): the URL must name, and be signed for, the clients' address.
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    settings = s3_settings(s3_endpoint) | {"s3_public_endpoint_url": public}
    server = LiveServer(make_settings(tmp_path_factory.mktemp("s3-public"), **settings)).start()
    try:
        data = b"a note uploaded through the public address\n"
        grant = presigned_upload(server, "public.txt", data, workspace="ws-public")
        assert grant["Param"]["Url"].startswith(f"{public}/{BUCKET}/{PREFIX}/session/ws-public/")
        added = add(server, grant["FileUploadLeaseId"], workspace="ws-public")
        assert added.status_code == 200, added.text
        file_id = added.json()["Data"]["FileId"]
        assert wait_final(server, file_id, "ws-public")["Status"] == "FILE_IS_READY"
        assert call(server, "DeleteFile", {"FileId": file_id}, "ws-public").status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("body", "words"),
    [(b"wrong bytes of the same size!!", "MD5"), (b"shorter", "bytes but the lease declared")],
)
def test_a_wrong_upload_is_refused_and_removed_and_the_right_one_then_accepted(
    live, s3_endpoint, body: bytes, words: str
) -> None:
    data = b"the declared file, 30 bytes.\n."
    assert len(data) == len(body) or words != "MD5"
    before = bucket_keys(s3_endpoint)
    grant = presigned_upload(live, "note.txt", data, workspace="ws-wrong", body=body)
    assert bucket_keys(s3_endpoint) - before  # the bucket took it
    refused = add(live, grant["FileUploadLeaseId"], workspace="ws-wrong")
    assert refused.status_code == 400, refused.text
    payload = refused.json()
    assert payload["Success"] is False and payload["Code"] == "InvalidParameter" and words in payload["Message"]
    assert bucket_keys(s3_endpoint) == before  # removed
    listed = call(live, "ListFile", {"MaxResults": 10}, "ws-wrong").json()["Data"]
    assert listed["TotalCount"] == 0

    param = grant["Param"]  # the lease stays usable until it expires
    assert live.http.put(param["Url"], content=data, headers=param["Headers"]).status_code == 200
    accepted = add(live, grant["FileUploadLeaseId"], workspace="ws-wrong")
    assert accepted.status_code == 200, accepted.text
    file_id = accepted.json()["Data"]["FileId"]
    assert wait_final(live, file_id, "ws-wrong")["Status"] == "FILE_IS_READY"
    assert call(live, "DeleteFile", {"FileId": file_id}, "ws-wrong").status_code == 200
    assert bucket_keys(s3_endpoint) == before


def test_add_file_before_the_presigned_put_says_to_upload_first(live) -> None:
    data = b"never uploaded"
    grant = lease(live, "later.txt", data).json()["Data"]
    response = add(live, grant["FileUploadLeaseId"])
    assert response.status_code == 400 and "PUT the file" in response.json()["Message"]


def test_a_knowledge_document_is_stored_in_the_bucket_ingested_and_deleted(live, s3_endpoint) -> None:
    auth = live.auth()
    created = live.http.post("/manage/v1/knowledge/bases", json={"name": "s3 kb"}, headers=auth)
    index_id = created.json()["index_id"]
    text = "# 年假制度\n每位员工每年享有15天带薪年假，入职满五年后增加到20天。".encode()
    uploaded = live.http.post(
        f"/manage/v1/knowledge/bases/{index_id}/files", files=[("files", ("hr.md", text))], headers=auth
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["files"][0]["file_id"]
    stored = [k for k in bucket_keys(s3_endpoint) if k.startswith(f"{PREFIX}/knowledge/files/{index_id}/")]
    assert len(stored) == 1
    body = client(s3_endpoint).get_object(Bucket=BUCKET, Key=stored[0])["Body"].read()
    assert hashlib.md5(body).digest() == hashlib.md5(text).digest()
    assert not (live.settings.home / "knowledge" / "files").exists()

    deadline = time.monotonic() + 120
    while (view := live.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=auth).json())["status"] not in {
        "FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED"
    }:
        assert time.monotonic() < deadline, view
        time.sleep(0.1)
    assert view["status"] == "FILE_IS_READY", view
    retrieve = {"query": "年假有几天", "index_ids": [index_id]}
    chunks = live.http.post("/manage/v1/knowledge/retrieve", json=retrieve, headers=auth).json()["chunks"]
    assert chunks and "15天带薪年假" in chunks[0]["text"]

    assert live.http.delete(f"/manage/v1/knowledge/files/{file_id}", headers=auth).status_code == 204
    assert stored[0] not in bucket_keys(s3_endpoint)


# The expiry tests move the clock: they come last in the module.


def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_an_expired_lease_takes_its_presigned_upload_with_it(live, files, s3_endpoint) -> None:
    before = bucket_keys(s3_endpoint)
    presigned_upload(live, "orphan.txt", b"uploaded, never added", workspace="ws-expiry")
    assert bucket_keys(s3_endpoint) - before
    shift_clock(files, minutes=live.settings.files_lease_minutes + 1)
    _until(lambda: bucket_keys(s3_endpoint) == before)  # the sweeper removed lease and object


def test_a_session_file_that_expires_leaves_no_object(live, files, s3_endpoint) -> None:
    before = bucket_keys(s3_endpoint)
    grant = presigned_upload(live, "short.txt", b"The launch is on Friday.", workspace="ws-ttl")
    file_id = add(live, grant["FileUploadLeaseId"], workspace="ws-ttl").json()["Data"]["FileId"]
    assert wait_final(live, file_id, "ws-ttl")["Status"] == "FILE_IS_READY"
    assert bucket_keys(s3_endpoint) - before
    shift_clock(files, days=live.settings.files_ttl_days, minutes=1)
    _until(lambda: wait_final(live, file_id, "ws-ttl")["Status"] == "FILE_EXPIRED")
    assert bucket_keys(s3_endpoint) == before
