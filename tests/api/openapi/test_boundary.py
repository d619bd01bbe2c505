"""The input boundary on the OpenAPI face: bad text and oversized bodies answer in its envelope."""

from __future__ import annotations

import pytest
from alibabacloud_bailian20231229 import models

from tests.api.openapi.conftest import WORKSPACE, OpenApi


def envelope_error(response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Code"] == body["code"] and body["RequestId"] == response.headers["x-request-id"], body
    assert body["Code"] == ("RequestTooLarge" if status == 413 else "InvalidParameter"), body
    assert words.lower() in body["Message"].lower(), body


@pytest.mark.parametrize(
    "content,content_type,words",
    [
        (b"content=a%00b", "application/x-www-form-urlencoded", "NUL"),
        (b"content=%ED%A0%80", "application/x-www-form-urlencoded", "UTF-8"),
        (b"content=%FF", "application/x-www-form-urlencoded", "UTF-8"),
        (b'{"content": "\\ud800"}', "application/json", "surrogate"),
        (b'{"content": ' + b"[" * 3000 + b"]" * 3000 + b"}", "application/json", "nested"),
        (b"content=" + b"x" * 2_000_000, "application/x-www-form-urlencoded", "limit"),
    ],
)
def test_bad_bodies_answer_in_the_openapi_envelope(openapi: OpenApi, content, content_type, words) -> None:
    memory_id = openapi.bearer.create_memory(WORKSPACE, models.CreateMemoryRequest()).body.memory_id
    response = openapi.server.http.post(
        f"/{WORKSPACE}/memories/{memory_id}/memoryNodes",
        content=content,
        headers={"x-acs-bearer-token": openapi.credentials["api_key"], "content-type": content_type},
    )
    envelope_error(response, 413 if words == "limit" else 400, words)
    listed = openapi.bearer.list_memory_nodes(WORKSPACE, memory_id, models.ListMemoryNodesRequest())
    assert not listed.body.memory_nodes


def test_bad_ids_in_paths_and_queries_answer_in_the_envelope(openapi: OpenApi) -> None:
    headers = {"x-acs-bearer-token": openapi.credentials["api_key"]}
    http = openapi.server.http
    envelope_error(http.get(f"/{WORKSPACE}/memories/a%00b", headers=headers), 400, "NUL")
    envelope_error(http.get(f"/{WORKSPACE}/memories?nextToken=%00", headers=headers), 400, "NUL")
