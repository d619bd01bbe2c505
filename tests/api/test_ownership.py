"""One ownership rule: another workspace's resource answers exactly like a missing one —
same status, same code, same message (with its id) — on every route family."""

from __future__ import annotations

import uuid

import httpx

MISSING = uuid.uuid4().hex


def same_as_missing(foreign: httpx.Response, missing: httpx.Response, foreign_id: str) -> None:
    assert foreign.status_code == missing.status_code == 404, (foreign.text, missing.text)
    theirs, unknown = foreign.json(), missing.json()
    for body in (theirs, unknown):
        body.pop("request_id", None), body.pop("RequestId", None)
    assert theirs == {k: v.replace(MISSING, foreign_id) if isinstance(v, str) else v for k, v in unknown.items()}


def test_every_family_answers_another_workspaces_ids_like_missing_ones(server):
    http, ours, theirs = server.http, server.auth("ws1"), server.auth("ws2")
    app_id = server.app(workspace="ws2")
    session_id = server.call(app_id, {"input": {"prompt": "hi"}}, workspace="ws2").json()["output"]["session_id"]
    memory_id = http.post("/manage/v1/memories", json={}, headers=theirs).json()["memory_id"]
    plugin = {"name": "p", "description": "d", "url": "https://example.com/x"}
    tool_id = http.post("/manage/v1/plugins", json=plugin, headers=theirs).json()["tool_id"]
    base_id = http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=theirs).json()["index_id"]
    upload = http.post(
        f"/manage/v1/knowledge/bases/{base_id}/files", files={"files": ("a.txt", b"hello")}, headers=theirs
    )
    document_id = upload.json()["files"][0]["file_id"]

    routes = [
        ("GET", "/manage/v1/apps/{}", None, app_id),
        ("PATCH", "/manage/v1/apps/{}", {"instructions": "x"}, app_id),
        ("POST", "/manage/v1/apps/{}/publish", None, app_id),
        ("DELETE", "/manage/v1/apps/{}", None, app_id),
        ("POST", "/api/v1/apps/{}/completion", {"input": {"prompt": "x"}}, app_id),
        ("GET", "/manage/v1/memories/{}", None, memory_id),
        ("GET", "/manage/v1/memories/{}/nodes", None, memory_id),
        ("DELETE", "/manage/v1/memories/{}", None, memory_id),
        ("GET", "/manage/v1/plugins/{}", None, tool_id),
        ("PATCH", "/manage/v1/plugins/{}", {"description": "x"}, tool_id),
        ("DELETE", "/manage/v1/plugins/{}", None, tool_id),
        ("GET", "/manage/v1/knowledge/bases/{}", None, base_id),
        ("GET", "/manage/v1/knowledge/bases/{}/files", None, base_id),
        ("DELETE", "/manage/v1/knowledge/bases/{}", None, base_id),
        ("GET", "/manage/v1/knowledge/files/{}", None, document_id),
        ("DELETE", "/manage/v1/knowledge/files/{}", None, document_id),
    ]
    for method, path, body, foreign_id in routes:
        foreign = http.request(method, path.format(foreign_id), json=body, headers=ours)
        missing = http.request(method, path.format(MISSING), json=body, headers=ours)
        same_as_missing(foreign, missing, foreign_id)

    # Ids inside a call's body: memory, session, knowledge base.
    our_app = server.app(workspace="ws1", memory_enabled=True)
    for field, foreign_id in (("memory_id", memory_id), ("session_id", session_id)):
        foreign = server.call(our_app, {"input": {"prompt": "x", field: foreign_id}})
        missing = server.call(our_app, {"input": {"prompt": "x", field: MISSING}})
        same_as_missing(foreign, missing, foreign_id)

    def rag(ids: list[str]) -> httpx.Response:
        return server.call(our_app, {"input": {"prompt": "x"}, "parameters": {"rag_options": {"pipeline_ids": ids}}})

    same_as_missing(rag([base_id]), rag([MISSING]), base_id)

    # Session files (the OpenAPI envelope of /manage/v1/files).
    def describe(file_id: str, auth: dict) -> httpx.Response:
        return http.post("/manage/v1/files/DescribeFile", json={"FileId": file_id}, headers=auth)

    lease = http.post(
        "/manage/v1/files/ApplyFileUploadLease",
        json={"CategoryId": "default", "CategoryType": "SESSION_FILE", "FileName": "a.txt",
              "Md5": "5d41402abc4b2a76b9719d911017c592", "SizeInBytes": 5},
        headers=theirs,
    ).json()["Data"]
    assert http.put(lease["Param"]["Url"], content=b"hello", headers=lease["Param"]["Headers"]).status_code == 200
    add = {"LeaseId": lease["FileUploadLeaseId"], "CategoryId": "default", "CategoryType": "SESSION_FILE"}
    file_id = http.post("/manage/v1/files/AddFile", json=add, headers=theirs)
    file_id = file_id.json()["Data"]["FileId"]
    same_as_missing(describe(file_id, ours), describe(MISSING, ours), file_id)

    # Nothing of ws2 changed.
    assert http.get(f"/manage/v1/apps/{app_id}", headers=theirs).status_code == 200
    assert http.get(f"/manage/v1/knowledge/files/{document_id}", headers=theirs).status_code == 200
    assert describe(file_id, theirs).status_code == 200
