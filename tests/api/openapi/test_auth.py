"""Credentials of the OpenAPI face, through the official SDK (unmodified) and raw HTTP:
a signature (ACS3-HMAC-SHA256) or a bearer token; every refusal a JSON error with
Code/Message/RequestId that changes nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from alibabacloud_bailian20231229 import models
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException

from tests.api.openapi.conftest import WORKSPACE, OpenApi, create_key, runtime, sdk_client
from tests.support import LiveServer, make_settings


def memory_count(openapi: OpenApi) -> int:
    response = openapi.bearer.list_memories(WORKSPACE, models.ListMemoriesRequest())
    return response.body.total_count


def refused(call, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientException) as caught:
        call()
    error = caught.value
    assert (error.status_code, error.code) == (status, code), error.data
    assert error.data["Message"] and error.data["RequestId"]
    assert error.data["code"] == code and error.data["requestId"] == error.data["RequestId"]
    return error.data


def test_both_credential_forms_reach_the_same_workspace(openapi: OpenApi) -> None:
    signed = openapi.signed.create_memory(WORKSPACE, models.CreateMemoryRequest(description="signed"))
    bearer = openapi.bearer.create_memory(WORKSPACE, models.CreateMemoryRequest(description="bearer"))
    assert signed.status_code == bearer.status_code == 200
    listed = openapi.signed.list_memories(WORKSPACE, models.ListMemoriesRequest()).body
    assert {m.memory_id: m.description for m in listed.memories} == {
        signed.body.memory_id: "signed",
        bearer.body.memory_id: "bearer",
    }
    assert listed.workspace_id == WORKSPACE


def test_a_wrong_secret_is_refused_and_changes_nothing(openapi: OpenApi) -> None:
    wrong = {**openapi.credentials, "access_key_secret": "wrong" + openapi.credentials["access_key_secret"]}
    client = openapi.client(credentials=wrong)
    refused(lambda: client.create_memory(WORKSPACE, models.CreateMemoryRequest(description="x")), 401, "SignatureDoesNotMatch")
    assert memory_count(openapi) == 0


def test_an_unknown_access_key_id_and_a_bad_bearer_token_are_refused(openapi: OpenApi) -> None:
    unknown = sdk_client(openapi.server, access_key_id="OBAKnope", access_key_secret="whatever")
    refused(lambda: unknown.list_memories(WORKSPACE, models.ListMemoriesRequest()), 401, "InvalidApiKey")
    bad_bearer = sdk_client(openapi.server, bearer_token="sk-" + "0" * 32)
    refused(lambda: bad_bearer.list_memories(WORKSPACE, models.ListMemoriesRequest()), 401, "InvalidApiKey")


def test_no_credentials_at_all(openapi: OpenApi) -> None:
    response = openapi.server.http.post(f"/{WORKSPACE}/memories", params={"description": "x"})
    assert response.status_code == 401
    assert response.json()["Code"] == "InvalidApiKey" and response.json()["RequestId"]
    assert memory_count(openapi) == 0


def test_a_stale_date_is_refused(openapi: OpenApi) -> None:
    stale = (datetime.now(UTC) - timedelta(minutes=16)).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = models.CreateMemoryRequest(description="stale")
    refused(
        lambda: openapi.signed.create_memory_with_options(WORKSPACE, request, {"x-acs-date": stale}, runtime()),
        401,
        "InvalidTimeStamp.Expired",
    )
    assert memory_count(openapi) == 0


def test_a_replayed_nonce_is_refused(openapi: OpenApi) -> None:
    headers = {"x-acs-signature-nonce": "one-nonce-only"}
    request = models.CreateMemoryRequest(description="once")
    first = openapi.signed.create_memory_with_options(WORKSPACE, request, dict(headers), runtime())
    assert first.status_code == 200
    refused(
        lambda: openapi.signed.create_memory_with_options(WORKSPACE, request, dict(headers), runtime()),
        401,
        "SignatureNonceUsed",
    )
    assert memory_count(openapi) == 1


def test_a_nonce_is_refused_by_another_process_on_the_same_database(openapi: OpenApi) -> None:
    """Two servers on one database stand for two API processes."""
    other = LiveServer(openapi.server.settings).start()
    try:
        headers = {"x-acs-signature-nonce": "shared-nonce"}
        request = models.CreateMemoryRequest(description="once")
        assert openapi.signed.create_memory_with_options(WORKSPACE, request, dict(headers), runtime()).status_code == 200
        twin = sdk_client(
            other,
            access_key_id=openapi.credentials["access_key_id"],
            access_key_secret=openapi.credentials["access_key_secret"],
        )
        refused(lambda: twin.create_memory_with_options(WORKSPACE, request, dict(headers), runtime()), 401, "SignatureNonceUsed")
    finally:
        other.stop()
    assert memory_count(openapi) == 1


def test_another_workspace_in_the_path_is_forbidden(openapi: OpenApi) -> None:
    create_key(openapi.server, "ws-other")
    for client in (openapi.signed, openapi.bearer):
        refused(lambda: client.create_memory("ws-other", models.CreateMemoryRequest(description="x")), 403, "Workspace.AccessDenied")
    other = openapi.client(credentials=create_key(openapi.server, "ws-other"), bearer=True)
    assert other.list_memories("ws-other", models.ListMemoriesRequest()).body.total_count == 0


def test_a_revoked_key_is_refused_in_both_forms_at_once(openapi: OpenApi) -> None:
    assert memory_count(openapi) == 0
    response = openapi.server.http.delete(
        f"/manage/v1/keys/{openapi.credentials['key_id']}",
        headers={"Authorization": f"Bearer {openapi.server.admin_token}"},
    )
    assert response.status_code == 204
    for client in (openapi.signed, openapi.bearer):
        refused(lambda: client.create_memory(WORKSPACE, models.CreateMemoryRequest(description="x")), 401, "InvalidApiKey")


def _signed_by_the_sdk(openapi: OpenApi, query: dict[str, str], nonce: str) -> dict[str, str]:
    """Headers of POST /{ws}/memories signed by the SDK's own signing function."""
    from types import SimpleNamespace

    from alibabacloud_tea_openapi.utils import Utils

    body_hash = hashlib.sha256(b"").hexdigest()
    headers = {
        "host": f"127.0.0.1:{openapi.server.port}",
        "x-acs-version": "2023-12-29",
        "x-acs-action": "CreateMemory",
        "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce,
        "accept": "application/json",
        "x-acs-content-sha256": body_hash,
    }
    request = SimpleNamespace(pathname=f"/{WORKSPACE}/memories", method="POST", query=query, headers=headers)
    headers["Authorization"] = Utils.get_authorization(
        request,
        "ACS3-HMAC-SHA256",
        body_hash,
        openapi.credentials["access_key_id"],
        openapi.credentials["access_key_secret"],
    )
    return headers


def test_a_changed_query_does_not_match_its_signature(openapi: OpenApi) -> None:
    http = openapi.server.http
    good = _signed_by_the_sdk(openapi, {"description": "a b~c/d"}, "hand-1")
    assert http.post(f"/{WORKSPACE}/memories", params={"description": "a b~c/d"}, headers=good).status_code == 200
    tampered = _signed_by_the_sdk(openapi, {"description": "original"}, "hand-2")
    response = http.post(f"/{WORKSPACE}/memories", params={"description": "changed"}, headers=tampered)
    assert response.status_code == 401 and response.json()["Code"] == "SignatureDoesNotMatch"
    unsigned_date = {k: v for k, v in _signed_by_the_sdk(openapi, {}, "hand-3").items()}
    unsigned_date["Authorization"] = unsigned_date["Authorization"].replace("x-acs-date;", "")
    response = http.post(f"/{WORKSPACE}/memories", headers=unsigned_date)
    assert response.status_code == 401 and "x-acs-date" in response.json()["Message"]
    listed = openapi.bearer.list_memories(WORKSPACE, models.ListMemoriesRequest()).body.memories
    assert [m.description for m in listed] == ["a b~c/d"]


def test_throttling_answers_429_with_retry_after(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    server = LiveServer(make_settings(tmp_path / "home", database_url, rate_limit_per_minute=2)).start()
    try:
        client = sdk_client(server, bearer_token=create_key(server, WORKSPACE)["api_key"])
        for _ in range(2):
            client.list_memories(WORKSPACE, models.ListMemoriesRequest())
        with pytest.raises(ThrottlingException) as caught:
            client.list_memories_with_options(WORKSPACE, models.ListMemoriesRequest(), {}, runtime())
        assert caught.value.status_code == 429 and caught.value.retry_after >= 1
        assert caught.value.data["Code"] == "Throttling.RateQuota"
    finally:
        server.stop()


def test_other_faces_are_not_shadowed(openapi: OpenApi) -> None:
    http = openapi.server.http
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/docs").status_code == 200
    # A first segment of another face is never a workspace, so never an OpenAPI route.
    response = http.post("/api/memories", headers={"x-acs-bearer-token": openapi.credentials["api_key"]})
    assert response.status_code == 404 and "requestId" not in response.json()
    made = http.post(
        "/manage/v1/workspaces",
        json={"id": "console"},
        headers={"Authorization": f"Bearer {openapi.server.admin_token}"},
    )
    assert made.status_code == 400 and "reserved" in made.json()["message"]


def test_an_unknown_operation_path_answers_what_the_sdk_reads(openapi: OpenApi) -> None:
    response = openapi.server.http.get(
        f"/{WORKSPACE}/no/such/operation",
        headers={"x-acs-action": "NoSuchOperation", "x-acs-bearer-token": openapi.credentials["api_key"]},
    )
    body = response.json()
    assert response.status_code == 404
    assert body["Code"] == "NotFound" and body["RequestId"] == body["requestId"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "authorization",
    [
        b"ACS3-HMAC-SHA256 Credential=x",
        b"Basic abc",
        b"ACS3-HMAC-SHA256 Credential=OBAKx,SignedHeaders=host;x-acs-date;x-acs-signature-nonce;x-acs-content-sha256,Signature=\xe9\xe9",
    ],
)
def test_malformed_signatures_are_401_not_500(openapi: OpenApi, authorization: bytes) -> None:
    headers = {
        "Authorization": authorization,
        "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": "n-\xe9".encode("latin-1"),
        "x-acs-content-sha256": "\xe9".encode("latin-1"),
    }
    response = openapi.server.http.get(f"/{WORKSPACE}/memories", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["Code"] in {"SignatureDoesNotMatch", "InvalidApiKey"} and response.json()["RequestId"]
