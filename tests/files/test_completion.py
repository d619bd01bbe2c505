"""A call with rag_options.session_file_ids through the completion endpoint (echo model:
its answer is the context it was given)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.files.conftest import make_docx, upload, wait_final


def test_answer_is_grounded_in_the_session_file(live, tmp_path: Path) -> None:
    file_id = upload(live, "phones.docx", make_docx(tmp_path / "phones.docx"))
    assert wait_final(live, file_id)["Status"] == "FILE_IS_READY"
    app_id = live.app(file_parsing=True, show_sources=True)
    response = live.call(app_id, {
        "input": {"prompt": "请根据以下文件帮我推荐一款3000元以下的手机"},
        "parameters": {"rag_options": {"session_file_ids": [file_id]}, "has_thoughts": True},
    })
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    system = json.loads(output["text"])["messages"][0]["content"]
    assert "<session_files>" in system and "通义 Vivid 7" in system and "2999元" in system
    assert {r["doc_id"] for r in output["doc_references"]} == {file_id}
    assert any(t.get("action_type") == "agentRag" for t in output["thoughts"])


def test_call_errors_are_plain_http_errors(live) -> None:
    app_id = live.app(file_parsing=True)
    off_app = live.app(file_parsing=False)
    cases = [
        (app_id, ["file_abc"], 400, "file_session_"),
        (app_id, [f"file_session_{n}" for n in range(11)], 400, "at most 10"),
        (app_id, ["file_session_unknown"], 404, "does not exist"),
        (off_app, ["file_session_unknown"], 400, "--file-parsing"),
    ]
    for app, ids, status, words in cases:
        response = live.call(app, {"input": {"prompt": "hi"}, "parameters": {"rag_options": {"session_file_ids": ids}}})
        assert response.status_code == status, response.text
        assert words in response.json()["message"]


def test_session_file_ids_in_the_parameters_object_as_the_spec_words_it(live, tmp_path: Path) -> None:
    file_id = upload(live, "phones.docx", make_docx(tmp_path / "phones.docx"))
    assert wait_final(live, file_id)["Status"] == "FILE_IS_READY"
    app_id = live.app(file_parsing=True)
    response = live.call(app_id, {
        "input": {"prompt": "请根据以下文件帮我推荐一款3000元以下的手机"},
        "parameters": {"session_file_ids": [file_id]},
    })
    assert response.status_code == 200, response.text
    system = json.loads(response.json()["output"]["text"])["messages"][0]["content"]
    assert "<session_files>" in system and "2999元" in system
    # The same checks as rag_options': a bad id is refused, not ignored.
    bad = live.call(app_id, {"input": {"prompt": "hi"}, "parameters": {"session_file_ids": ["file_abc"]}})
    assert bad.status_code == 400 and "file_session_" in bad.json()["message"]
    wrong_type = live.call(app_id, {"input": {"prompt": "hi"}, "parameters": {"session_file_ids": "file_abc"}})
    assert wrong_type.status_code == 400 and "session_file_ids" in wrong_type.json()["message"]


def test_the_file_parsing_error_says_how_to_turn_it_on(live) -> None:
    off_app = live.app(file_parsing=False)
    response = live.call(off_app, {"input": {"prompt": "hi"}, "parameters": {"session_file_ids": ["file_session_x"]}})
    assert response.status_code == 400
    message = response.json()["message"]
    assert "--file-parsing" in message and '"file_parsing": true' in message and "publish" in message


def _knowledge_base(live, workspace: str = "ws1") -> str:
    import time

    auth = live.auth(workspace)
    index_id = live.http.post("/manage/v1/knowledge/bases", json={"name": "hr"}, headers=auth).json()["index_id"]
    sections = "\n\n".join(f"## Policy {n}\n\nRule {n}: employees file form {n} before day {n}." for n in range(1, 9))
    added = live.http.post(f"/manage/v1/knowledge/bases/{index_id}/files", headers=auth,
                           files=[("files", ("hr.md", f"# HR handbook\n\n{sections}\n".encode()))])
    assert added.status_code == 201, added.text
    file_id = added.json()["files"][0]["file_id"]
    deadline = time.monotonic() + 120
    while (status := live.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=auth).json()["status"]) \
            != "FILE_IS_READY":
        assert "FAILED" not in status and time.monotonic() < deadline, status
        time.sleep(0.1)
    return index_id


def test_references_are_numbered_once_and_a_file_question_is_not_padded(live, tmp_path: Path) -> None:
    file_id = upload(live, "phones.docx", make_docx(tmp_path / "phones.docx"))
    assert wait_final(live, file_id)["Status"] == "FILE_IS_READY"
    index_id = _knowledge_base(live)
    app_id = live.app(file_parsing=True, show_sources=True, knowledge_enabled=True, knowledge_base_ids=[index_id])

    def refs(parameters: dict) -> list[dict]:
        response = live.call(app_id, {
            "input": {"prompt": "这个文件里哪款手机低于3000元？", "doc_reference_type": "indexed"},
            "parameters": parameters,
        })
        assert response.status_code == 200, response.text
        return response.json()["output"]["doc_references"]

    knowledge_only = refs({})
    assert len(knowledge_only) > 2 and {r["doc_id"] for r in knowledge_only} != {file_id}
    both = refs({"session_file_ids": [file_id]})
    numbers = [r["index_id"] for r in both]
    indexes = [r.get("reference_index") or r.get("index") for r in both]
    assert len(set(indexes)) == len(indexes) == len(both), both
    assert indexes == [str(n) for n in range(1, len(both) + 1)], indexes
    from_file = [r for r in both if r["doc_id"] == file_id]
    from_base = [r for r in both if r["index_id"] == index_id]
    assert from_file and both[0]["doc_id"] == file_id, numbers
    assert len(from_base) <= 2, both
