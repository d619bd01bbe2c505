"""The input boundary: bad text, deep or huge JSON and oversized bodies are a 400/413 in the
shape of the face they came in by, on every route family — never a 500, nothing stored."""

from __future__ import annotations

import httpx
import pytest

from tests.support import LiveServer, make_settings

DASHSCOPE_KEYS = {"code", "message", "request_id"}
ENVELOPE_KEYS = {"Success", "Code", "Message", "RequestId", "Status", "Data"}


def dashscope_error(response: httpx.Response, status: int, code: str, words: str = "") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == DASHSCOPE_KEYS, body
    assert body["code"] == code and body["request_id"] == response.headers["x-request-id"]
    assert words.lower() in body["message"].lower(), body
    return body


def envelope_error(response: httpx.Response, status: int, code: str, words: str = "") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert body["Success"] is False and body["Code"] == code and body["Status"] == str(status)
    assert words.lower() in body["Message"].lower(), body
    return body


def completion(server: LiveServer, app_id: str, raw: bytes, content_type: str = "application/json", **headers: str):
    return server.http.post(
        f"/api/v1/apps/{app_id}/completion",
        content=raw,
        headers={**server.auth(), "Content-Type": content_type, **headers},
    )


BAD_CALL_BODIES = {
    "deep nesting": (b'{"input": {"prompt": "x"}, "parameters": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    "moderate nesting": (b'{"input": {"prompt": "x", "biz_params": ' + b'{"a":' * 200 + b"1" + b"}" * 201 + b"}", "nested"),
    "huge integer": (b'{"input": {"prompt": "x"}, "parameters": {"seed": ' + b"9" * 5000 + b"}}", "digits"),
    "huge float": (b'{"input": {"prompt": "x"}, "parameters": {"temperature": 1e999}}', "out of range"),
    "NaN": (b'{"input": {"prompt": "x"}, "parameters": {"temperature": NaN}}', "NaN"),
    "lone surrogate in the prompt": (b'{"input": {"prompt": "hi \\ud800 there"}}', "surrogate"),
    "lone surrogate in history": (
        b'{"input": {"prompt": "x", "messages": [{"role": "user", "content": "\\udfff"}]}}', "surrogate"),
    "surrogate in pipeline_ids": (
        b'{"input": {"prompt": "x"}, "parameters": {"rag_options": {"pipeline_ids": ["\\ud800"]}}}', "surrogate"),
    "NUL in session_file_ids": (
        b'{"input": {"prompt": "x"}, "parameters": {"rag_options": {"session_file_ids": ["a\\u0000b"]}}}', "NUL"),
    "NUL in session_id": (b'{"input": {"prompt": "x", "session_id": "\\u0000"}}', "NUL"),
    "NUL in memory_id": (b'{"input": {"prompt": "x", "memory_id": "m\\u0000"}}', "NUL"),
    "NUL in a key": (b'{"input": {"prompt": "x", "biz_params": {"user_prompt_params": {"a\\u0000": "1"}}}}', "NUL"),
    "invalid UTF-8": (b'{"input": {"prompt": "\xff\xfe"}}', "UTF-8"),
    "encoded surrogate": (b'{"input": {"prompt": "\xed\xa0\x80"}}', "UTF-8"),
    "not JSON": (b"{'input': 1}", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_CALL_BODIES))
def test_bad_call_bodies_are_400_in_the_dashscope_shape(server, case):
    app_id = server.app()
    raw, words = BAD_CALL_BODIES[case]
    dashscope_error(completion(server, app_id, raw), 400, "InvalidParameter", words)
    # The server still answers, on the same connection pool.
    assert server.call(app_id, {"input": {"prompt": "ok"}}).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "application/xml", ""])
def test_a_lying_content_type_does_not_skip_the_checks(server, content_type):
    app_id = server.app()
    response = completion(server, app_id, b'{"input": {"prompt": "\\ud800"}}', content_type)
    dashscope_error(response, 400, "InvalidParameter", "surrogate")


def test_a_streamed_call_with_bad_text_fails_before_the_first_byte_and_stores_nothing(server):
    app_id = server.app()
    first = server.call(app_id, {"input": {"prompt": "remember me"}}).json()
    session_id = first["output"]["session_id"]
    raw = ('{"input": {"prompt": "\\ud83d", "session_id": "%s"}}' % session_id).encode()
    response = completion(server, app_id, raw, **{"X-DashScope-SSE": "enable"})
    dashscope_error(response, 400, "InvalidParameter", "surrogate")
    assert not response.headers["content-type"].startswith("text/event-stream")
    # The session still holds exactly the one good turn: a call on it answers normally.
    again = server.call(app_id, {"input": {"prompt": "next", "session_id": session_id}})
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/manage/v1/apps/a%00b"),
        ("PATCH", "/manage/v1/apps/%00"),
        ("DELETE", "/manage/v1/apps/%00"),
        ("GET", "/manage/v1/memories/%00"),
        ("GET", "/manage/v1/plugins/%00"),
        ("GET", "/manage/v1/knowledge/bases/%00"),
        ("GET", "/manage/v1/knowledge/files/%00"),
        ("DELETE", "/manage/v1/knowledge/files/%00"),
        ("GET", "/manage/v1/apps/%ff%fe"),
        ("GET", "/manage/v1/apps/%ed%a0%80"),
        ("GET", "/manage/v1/apps?x=%00"),
        ("GET", "/manage/v1/apps?x=%ff"),
        ("POST", "/api/v1/apps/%00/completion"),
    ],
)
def test_bad_text_in_paths_and_query_strings(server, method, path):
    server.app()
    response = server.http.request(method, path, headers=server.auth(), json={"input": {"prompt": "x"}})
    dashscope_error(response, 400, "InvalidParameter")


def test_bad_text_in_management_bodies(server):
    app_id = server.app()
    for raw in (b'{"instructions": "a\\u0000b"}', b'{"instructions": "\\udc80"}', b'{"name": "\xc3"}'):
        response = server.http.patch(
            f"/manage/v1/apps/{app_id}", content=raw, headers={**server.auth(), "Content-Type": "application/json"}
        )
        dashscope_error(response, 400, "InvalidParameter")
    assert server.http.get(f"/manage/v1/apps/{app_id}", headers=server.auth()).json()["draft"]["instructions"] == ""


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b"null", b'{"FileId": "\\u0000"}', b'{"FileId": "\\ud800"}', b"\xff", b"[" * 5000],
)
def test_session_file_routes_answer_bad_bodies_in_the_envelope(server, raw):
    response = server.http.post(
        "/manage/v1/files/DescribeFile", content=raw, headers={**server.auth(), "Content-Type": "application/json"}
    )
    envelope_error(response, 400, "InvalidParameter")


def test_session_file_routes_with_a_form_or_no_body(server):
    for content, content_type in ((b"FileId=%00", "application/x-www-form-urlencoded"), (b"", "application/json")):
        response = server.http.post(
            "/manage/v1/files/DescribeFile", content=content, headers={**server.auth(), "Content-Type": content_type}
        )
        envelope_error(response, 400, "InvalidParameter")


def raw_multipart(*parts: tuple[bytes, bytes]) -> tuple[bytes, str]:
    """A multipart body written by hand (clients escape what this test must send raw)."""
    boundary = b"xXb0undaryXx"
    body = b"".join(b"--" + boundary + b"\r\nContent-Disposition: form-data; " + d + b"\r\n\r\n" + v + b"\r\n" for d, v in parts)
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


def test_bad_upload_file_names_and_form_fields(server):
    base = server.http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=server.auth()).json()
    url = f"/manage/v1/knowledge/bases/{base['index_id']}/files"
    for parts, words in (
        ([(b'name="files"; filename="a\x00b.txt"', b"hello")], "file name"),
        ([(b'name="files"; filename="a.txt"', b"hello"), (b'name="tags"', b"x\x00")], "tags"),
    ):
        body, content_type = raw_multipart(*parts)
        response = server.http.post(url, content=body, headers={**server.auth(), "Content-Type": content_type})
        dashscope_error(response, 400, "InvalidParameter", words)
    listed = server.http.get(url, headers=server.auth()).json()
    assert listed["files"] == []


@pytest.fixture
def small_server(tmp_path, database_url):
    settings = make_settings(
        tmp_path / "home", database_url,
        manage_max_body_bytes=4096, multipart_max_body_bytes=64 * 1024, upload_max_body_bytes=32 * 1024,
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


def test_management_bodies_are_limited(small_server):
    server = small_server
    app_id = server.app()
    response = server.http.patch(f"/manage/v1/apps/{app_id}", json={"instructions": "x" * 10_000}, headers=server.auth())
    dashscope_error(response, 413, "RequestTooLarge", "4096")
    plugin = {"name": "p", "description": "d", "url": "https://example.com/x", "headers": {"X": "y" * 10_000}}
    dashscope_error(server.http.post("/manage/v1/plugins", json=plugin, headers=server.auth()), 413, "RequestTooLarge")
    envelope_error(
        server.http.post("/manage/v1/files/DescribeFile", json={"FileId": "x" * 10_000}, headers=server.auth()),
        413, "RequestTooLarge",
    )
    assert server.http.get(f"/manage/v1/apps/{app_id}", headers=server.auth()).json()["draft"]["instructions"] == ""


def test_multipart_uploads_are_stopped_at_the_limit_while_reading(small_server):
    server = small_server
    base = server.http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=server.auth()).json()
    url = f"/manage/v1/knowledge/bases/{base['index_id']}/files"
    declared = server.http.post(url, files={"files": ("a.txt", b"x" * 100_000)}, headers=server.auth())
    dashscope_error(declared, 413, "RequestTooLarge", "65536")

    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n'.encode()

    def chunked():  # no Content-Length: the limit must hold while reading
        yield head
        for _ in range(20):
            yield b"y" * 8192
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = server.http.post(
        url, content=chunked(), headers={**server.auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    dashscope_error(streamed, 413, "RequestTooLarge", "65536")
    staging = server.settings.home / "knowledge" / "staging"
    assert not staging.exists() or not any(staging.iterdir())
    assert server.http.get(url, headers=server.auth()).json()["files"] == []
