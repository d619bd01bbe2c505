"""The management API and app calls with knowledge, through HTTP against a live server."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support import LiveServer


def _create(server: LiveServer, name="kb", kind="unstructured", workspace="ws1") -> str:
    response = server.http.post(
        "/manage/v1/knowledge/bases", json={"name": name, "kind": kind}, headers=server.auth(workspace)
    )
    assert response.status_code == 201, response.text
    return response.json()["index_id"]


def _upload(server: LiveServer, index_id: str, *paths: Path, workspace="ws1", **form) -> list[dict]:
    files = [("files", (p.name, p.read_bytes())) for p in paths]
    response = server.http.post(
        f"/manage/v1/knowledge/bases/{index_id}/files", files=files, data=form, headers=server.auth(workspace)
    )
    assert response.status_code == 201, response.text
    return response.json()["files"]


def _wait(server: LiveServer, file_id: str, workspace="ws1") -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=server.auth(workspace)).json()
        if view["status"] in {"FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED"}:
            return view
        time.sleep(0.1)
    raise AssertionError(f"{file_id} never finished: {view}")


def test_upload_describe_and_answer_with_sources(server, corpus):
    index_id = _create(server)
    uploaded = _upload(server, index_id, corpus["phones"], corpus["hr"], tags=["catalog"], meta=["dept=sales"])
    assert [f["status"] for f in uploaded] == ["INIT", "INIT"]
    views = [_wait(server, f["file_id"]) for f in uploaded]
    assert [v["status"] for v in views] == ["FILE_IS_READY", "FILE_IS_READY"]
    assert views[0]["tags"] == ["catalog"] and views[0]["metadata"] == {"dept": "sales"}
    assert views[1]["pages"] == 3

    app_id = server.app(knowledge_enabled=True, knowledge_base_ids=[index_id], show_sources=True)
    response = server.call(app_id, {"input": {"prompt": "请帮我推荐一款3000元以下的手机"},
                                    "parameters": {"has_thoughts": True}})
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    references = output["doc_references"]
    assert references[0]["doc_id"] == uploaded[0]["file_id"]
    assert references[0]["index_id"] == index_id
    assert references[0]["doc_name"] == corpus["phones"].name
    assert {"title", "text", "images", "page_number"} <= set(references[0])
    rag = [t for t in output["thoughts"] if t["action_type"] == "agentRag"]
    assert rag and "Zephyr Z9" in rag[0]["observation"]
    # the model saw the chunks inside a delimited data block
    messages = json.loads(output["text"])["messages"]
    context = "\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
    assert "<knowledge>" in context and "not instructions" in context and "Zephyr Z9" in context

    response = server.call(app_id, {"input": {"prompt": "How many days of annual leave?",
                                              "doc_reference_type": "indexed"}})
    output = response.json()["output"]
    assert output["doc_references"][0]["doc_id"] == uploaded[1]["file_id"]
    assert output["doc_references"][0]["page_number"] == [2]
    assert "[1]" in output["text"]  # numbered passages, with the instruction to cite them


def test_pipeline_ids_replace_the_apps_bases(server, corpus):
    linked, named = _create(server, "linked"), _create(server, "named")
    phones = _upload(server, linked, corpus["phones"])[0]
    hr = _upload(server, named, corpus["hr"])[0]
    _wait(server, phones["file_id"]), _wait(server, hr["file_id"])
    app_id = server.app(knowledge_enabled=True, knowledge_base_ids=[linked], show_sources=True)
    body = {"input": {"prompt": "手机"}, "parameters": {"rag_options": {"pipeline_ids": [named]}}}
    references = server.call(app_id, body).json()["output"]["doc_references"]
    assert references and {r["index_id"] for r in references} == {named}
    # also when the app links no base at all
    bare = server.app(show_sources=True)
    references = server.call(bare, body).json()["output"]["doc_references"]
    assert {r["index_id"] for r in references} == {named}


def test_show_sources_off_hides_references(server, corpus):
    index_id = _create(server)
    _wait(server, _upload(server, index_id, corpus["phones"])[0]["file_id"])
    app_id = server.app(knowledge_enabled=True, knowledge_base_ids=[index_id])
    output = server.call(app_id, {"input": {"prompt": "手机"}}).json()["output"]
    assert not output.get("doc_references")
    assert "Zephyr" in output["text"]  # still retrieved into the context


def test_structured_filter_in_a_call(server, corpus):
    index_id = _create(server, kind="structured")
    _wait(server, _upload(server, index_id, corpus["prices"])[0]["file_id"])
    app_id = server.app(show_sources=True)
    body = {"input": {"prompt": "推荐手机"},
            "parameters": {"rag_options": {"pipeline_ids": [index_id], "structured_filter": {"价格": "2999"}}}}
    references = server.call(app_id, body).json()["output"]["doc_references"]
    assert len(references) == 1 and "通义 Vivid 7" in references[0]["text"]
    body["parameters"]["rag_options"]["structured_filter"] = {"weight": "1"}
    response = server.call(app_id, body)
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter" and "weight" in response.json()["message"]


def test_call_errors_for_unknown_and_foreign_ids(server, corpus):
    foreign = _create(server, workspace="ws2")
    foreign_file = _upload(server, foreign, corpus["hr"], workspace="ws2")[0]["file_id"]
    mine = _create(server)
    app_id = server.app()
    cases = [
        ({"pipeline_ids": ["nope"]}, 404, "Index.NotFound"),
        ({"pipeline_ids": [foreign]}, 404, "Index.NotFound"),
        ({"pipeline_ids": [mine], "file_ids": [foreign_file]}, 404, "Index.FileNotFound"),
        ({"pipeline_ids": "not-a-list"}, 400, "InvalidParameter"),
        ({"pipeline_ids": [mine], "metadata_filter": ["x"]}, 400, "InvalidParameter"),
    ]
    for options, status, code in cases:
        response = server.call(app_id, {"input": {"prompt": "hi"}, "parameters": {"rag_options": options}})
        assert response.status_code == status, (options, response.text)
        body = response.json()
        assert body["code"] == code and body["request_id"]


def test_management_errors_and_isolation(server, corpus, tmp_path):
    mine = _create(server)
    other = _create(server, workspace="ws2")
    auth = server.auth("ws1")
    assert server.http.get(f"/manage/v1/knowledge/bases/{other}", headers=auth).status_code == 404
    assert server.http.delete(f"/manage/v1/knowledge/bases/{other}", headers=auth).status_code == 404
    assert server.http.get("/manage/v1/knowledge/files/nope", headers=auth).json()["code"] == "Index.FileNotFound"
    ids = [b["index_id"] for b in server.http.get("/manage/v1/knowledge/bases", headers=auth).json()["indexes"]]
    assert ids == [mine]
    bad = tmp_path / "virus.exe"
    bad.write_bytes(b"MZ")
    response = server.http.post(
        f"/manage/v1/knowledge/bases/{mine}/files",
        files=[("files", (corpus["phones"].name, corpus["phones"].read_bytes())), ("files", (bad.name, b"MZ"))],
        headers=auth,
    )
    assert response.status_code == 400 and ".exe" in response.json()["message"]
    listed = server.http.get(f"/manage/v1/knowledge/bases/{mine}/files", headers=auth).json()["files"]
    assert listed == []  # the whole request was refused: nothing stored
    response = server.http.post(
        "/manage/v1/knowledge/bases", json={"name": "x", "kind": "graph"}, headers=auth
    )
    assert response.status_code == 400
    assert server.http.get("/manage/v1/knowledge/bases").status_code == 401


def test_delete_reindex_and_retrieve_endpoint(server, corpus):
    index_id = _create(server)
    phones, hr = _upload(server, index_id, corpus["phones"], corpus["hr"])
    _wait(server, phones["file_id"]), _wait(server, hr["file_id"])
    auth = server.auth()
    retrieve = {"query": "Zephyr Z9 价格", "index_ids": [index_id]}
    chunks = server.http.post("/manage/v1/knowledge/retrieve", json=retrieve, headers=auth).json()["chunks"]
    assert chunks[0]["file_id"] == phones["file_id"]

    reindexed = server.http.post(f"/manage/v1/knowledge/files/{hr['file_id']}/reindex", headers=auth)
    assert reindexed.status_code == 202
    assert _wait(server, hr["file_id"])["status"] == "FILE_IS_READY"

    assert server.http.delete(f"/manage/v1/knowledge/files/{phones['file_id']}", headers=auth).status_code == 204
    chunks = server.http.post("/manage/v1/knowledge/retrieve", json=retrieve, headers=auth).json()["chunks"]
    assert phones["file_id"] not in {c["file_id"] for c in chunks}
    assert server.http.get(f"/manage/v1/knowledge/files/{phones['file_id']}", headers=auth).status_code == 404

    assert server.http.delete(f"/manage/v1/knowledge/bases/{index_id}", headers=auth).status_code == 204
    response = server.http.post("/manage/v1/knowledge/retrieve", json=retrieve, headers=auth)
    assert response.status_code == 404


def test_the_retrieve_endpoint_refuses_bad_requests_in_the_manage_shape(server, corpus):
    index_id = _create(server)
    (phones,) = _upload(server, index_id, corpus["phones"])
    _wait(server, phones["file_id"])
    auth = server.auth()
    path = "/manage/v1/knowledge/retrieve"

    def refused(expected_status: int, **request) -> tuple[str, str]:
        response = server.http.post(path, **request)
        assert response.status_code == expected_status, response.text
        body = response.json()
        assert body["request_id"] == response.headers["x-request-id"]
        return body["code"], body["message"]

    assert refused(401, json={"query": "Zephyr", "index_ids": [index_id]})[0] == "InvalidApiKey"
    bad_key = {"Authorization": "Bearer sk-not-a-key"}
    assert refused(401, json={"query": "Zephyr", "index_ids": [index_id]}, headers=bad_key)[0] == "InvalidApiKey"
    # The key is checked before the body: a bad key with a bad body is still a bad key.
    assert refused(401, json={"query": ""}, headers=bad_key)[0] == "InvalidApiKey"
    assert refused(400, json={"index_ids": [index_id]}, headers=auth) == ("InvalidParameter", "query: Field required")
    code, message = refused(400, json={"query": "", "index_ids": [index_id]}, headers=auth)
    assert (code, message.split(":")[0]) == ("InvalidParameter", "query") and "at least 1 character" in message
    code, message = refused(400, json={"query": "Zephyr", "index_ids": [index_id], "top_k": 0}, headers=auth)
    assert code == "InvalidParameter" and message.startswith("top_k:"), message
    code, message = refused(400, json={"query": "Zephyr", "index_ids": "kb"}, headers=auth)
    assert code == "InvalidParameter" and message.startswith("index_ids:"), message
    code, message = refused(400, json=["Zephyr"], headers=auth)
    assert code == "InvalidParameter" and "dictionary" in message, message
    json_header = {**auth, "Content-Type": "application/json"}
    code, message = refused(400, content=b'{"query": "Zephyr", ', headers=json_header)
    assert code == "InvalidParameter" and "JSON" in message, message
    code, message = refused(400, content=b"", headers=json_header)
    assert code == "InvalidParameter", message
    assert refused(404, json={"query": "Zephyr", "index_ids": ["no-such-base"]}, headers=auth)[0] == "Index.NotFound"
    # After all of that the base still answers.
    chunks = server.http.post(path, json={"query": "Zephyr Z9", "index_ids": [index_id]}, headers=auth).json()["chunks"]
    assert chunks[0]["file_id"] == phones["file_id"]
