"""``image_list`` and ``file_list`` through the dashscope SDK against a live server.

The files are served by a scripted origin on loopback, which the server may reach
only because the test allow-lists exactly its ``host:port``
(``OPENBAILIAN_OUTBOUND_ALLOW``); nothing here touches the internet. The guard's
refusals are checked against a second loopback listener that is *not*
allow-listed: after each refused call, nothing has connected to it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import dashscope
import httpx
import pytest
from dashscope import Application
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.files.conftest import make_docx, make_png
from tests.providers.conftest import FakeOpenAI
from tests.support import POSTGRES_URL, LiveServer, PostgresDatabase, make_settings, serve_in_thread

MAX_BYTES = 300_000
QUESTION = "这些文件里说了什么？"


class Listener:
    """A loopback port nobody is allowed to reach: connections wait in its backlog, never accepted."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


def origin_app(folder: Path, listener: Listener) -> Starlette:
    png = make_png(folder / "price.png", ["Zephyr Z9 2499 yuan"])
    docx = make_docx(folder / "phones.docx")
    files = {
        "/price.png": (png, "image/png"),
        "/scan": (png, "application/octet-stream"),  # generic type, no extension: refused
        "/blob/price.png": (png, "application/octet-stream"),  # generic type: the extension decides
        "/notes.txt": ("会议纪要：下季度预算为三万元。".encode(), "text/plain; charset=utf-8"),
        "/phones.docx": (docx, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        "/page.html": (b"<html>hi</html>", "text/html"),
        "/fake.png": (b"#!/bin/sh\necho pwned\n", "image/png"),
        "/big.png": (b"\x89PNG" + b"\0" * (MAX_BYTES + 10), "image/png"),
    }

    async def serve(request: Request) -> Response:
        path = request.url.path
        if path in files:
            data, media_type = files[path]
            return Response(data, media_type=media_type)
        if path == "/unsized.png":  # no Content-Length: the limit is counted while reading
            async def pieces():  # type: ignore[no-untyped-def]
                for _ in range(2 * MAX_BYTES // 65536 + 1):
                    yield b"\0" * 65536
                    await asyncio.sleep(0)

            return StreamingResponse(pieces(), media_type="image/png")
        if path == "/slow.png":  # answers only after the caller has given up
            while not await request.is_disconnected():
                await asyncio.sleep(0.05)
            return Response(status_code=499)
        if path == "/to-listener":
            return RedirectResponse(f"http://127.0.0.1:{listener.port}/x.png", status_code=302)
        if path == "/to-metadata":
            return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=307)
        return Response(status_code=404)

    return Starlette(routes=[Route("/{path:path}", serve)])


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    probe = Listener()
    yield probe
    probe.sock.close()


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, listener: Listener) -> Iterator[str]:
    with serve_in_thread(origin_app(tmp_path_factory.mktemp("origin"), listener)) as url:
        yield url


@pytest.fixture(scope="module")
def vision_model() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with serve_in_thread(fake.app) as url:
        fake.url = f"{url}/v1"
        yield fake


@pytest.fixture(scope="module")
def live(tmp_path_factory, origin, vision_model) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("call-files-home")
    database = PostgresDatabase(POSTGRES_URL) if POSTGRES_URL else None
    url = database.create() if database else None
    settings = make_settings(
        home, url,
        outbound_allow=origin.removeprefix("http://"),
        call_files_max_bytes=MAX_BYTES,
        call_files_timeout_seconds=3,
        models={"vl": {"provider": "openai", "base_url": vision_model.url, "model": "qwen-vl",
                       "vision": True, "max_retries": 0}},
    )
    server = LiveServer(settings).start()
    yield server
    server.stop()
    if database:
        database.drop()


@pytest.fixture
def sdk(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    monkeypatch.setattr(dashscope, "base_http_api_url", live.base_http_api_url)
    return live


@pytest.fixture(scope="module")
def echo_app(live: LiveServer) -> str:
    return live.app(file_parsing=True, show_sources=True)


def call(sdk: LiveServer, app_id: str, **kwargs):  # type: ignore[no-untyped-def]
    return Application.call(api_key=sdk.key(), app_id=app_id, prompt=QUESTION, **kwargs)


def system_of(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, (response.code, response.message)
    messages = json.loads(response.output.text)["messages"]
    assert messages[-1] == {"role": "user", "content": QUESTION}
    return messages[0]["content"]


# ---------------------------------------------------------------- what the model gets


def test_the_echo_model_sees_the_images_ocr_text_and_the_files_text(sdk, echo_app, origin):
    response = call(sdk, echo_app, image_list=[f"{origin}/price.png"],
                    file_list=[f"{origin}/notes.txt", f"{origin}/phones.docx"])
    system = system_of(response)
    assert "<session_files>" in system and "not instructions" in system
    assert "2499" in system  # OCR of the image
    assert "下季度预算为三万元" in system  # the text file
    assert "百炼 Zephyr Z9" in system and "星尘 S9 Pro" in system  # the docx
    names = [r.doc_name for r in response.output.doc_references]
    assert {"price.png", "notes.txt", "phones.docx"} <= set(names)


def test_data_urls_and_generic_types_with_an_extension_are_taken(sdk, echo_app, origin, tmp_path):
    text = base64.b64encode("备忘：周五上线。".encode()).decode()
    response = call(sdk, echo_app, file_list=[f"data:text/plain;base64,{text}"],
                    image_list=[f"{origin}/blob/price.png"])
    system = system_of(response)
    assert "周五上线" in system and "2499" in system


def test_nothing_is_kept_after_the_call(sdk, echo_app, origin, live):
    first = call(sdk, echo_app, file_list=[f"{origin}/notes.txt"])
    assert "三万元" in system_of(first)
    follow = Application.call(api_key=sdk.key(), app_id=echo_app, prompt="还记得吗？",
                              session_id=first.output.session_id)
    messages = json.loads(follow.output.text)["messages"]
    assert "三万元" not in messages[0]["content"]  # the file was for that call only
    assert not list((live.settings.home / "incoming").glob("call-*"))


def test_a_vision_model_gets_the_image_itself(sdk, live, origin, vision_model):
    vision_model.reset()
    vision_model.add(events=[
        {"choices": [{"index": 0, "delta": {"content": "2499元"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ])
    app_id = live.app(model="vl")  # no file parsing needed: the model reads the image itself
    response = call(sdk, app_id, image_list=[f"{origin}/price.png"])
    assert response.status_code == 200, response.message
    assert response.output.text == "2499元"
    sent = vision_model.requests[-1].body["messages"]
    text, image = sent[-1]["content"]
    assert text == {"type": "text", "text": QUESTION}
    url = image["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")  # the checked bytes, never the URL to refetch
    assert base64.b64decode(url.split(",", 1)[1]) == httpx.get(f"{origin}/price.png").content
    assert "2499" not in json.dumps(sent[:-1])  # no OCR text for a model that sees


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"image_list": ["{origin}/page.html"]}, "content type 'text/html' is not an image"),
    ({"image_list": ["{origin}/scan"]}, "content type 'application/octet-stream' is not an image"),
    ({"file_list": ["{origin}/page.html"]}, "content type 'text/html' is not a session-file type"),
    ({"image_list": ["{origin}/big.png"]}, f"more than the {MAX_BYTES}-byte limit"),
    ({"image_list": ["{origin}/unsized.png"]}, f"larger than the {MAX_BYTES}-byte limit"),
    ({"image_list": ["{origin}/slow.png"]}, "took longer than 3 s"),
    ({"image_list": ["{origin}/missing.png"]}, "HTTP 404"),
    ({"image_list": ["{origin}/fake.png"]}, "executable or a script"),
    ({"image_list": ["ftp://example.com/a.png"]}, "only http and https"),
    ({"file_list": ["data:text/plain;base64,@@@"]}, "base64 data is not valid"),
    ({"file_list": ["data:text/plain"]}, "needs a comma"),
    ({"file_list": ["{origin}/notes.txt", "{origin}/page.html"]}, "input.file_list[1]"),
])
def test_unusable_urls_are_a_400_naming_them_before_the_model_runs(sdk, echo_app, origin, kwargs, words):
    kwargs = {k: [u.format(origin=origin) for u in v] for k, v in kwargs.items()}
    response = call(sdk, echo_app, **kwargs)
    assert response.status_code == 400 and response.code == "InvalidParameter", response.message
    assert words in response.message
    field = next(iter(kwargs))
    assert f"input.{field}[" in response.message


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:{port}/a.png", "a loopback address"),
    ("http://localhost:{port}/a.png", "a loopback address"),  # checked after DNS
    ("http://[::ffff:127.0.0.1]:{port}/a.png", "a loopback address"),
    ("http://2130706433:{port}/a.png", "a loopback address"),
    ("http://10.1.2.3/a.png", "a private address"),
    ("http://192.168.1.1/a.png", "a private address"),
    # link-local: Python counts 169.254/16 as private too, and the guard says so first
    ("http://169.254.10.10/a.png", "refused to connect to '169.254.10.10'"),
    ("http://[fe80::1]/a.png", "refused to connect to 'fe80::1'"),
    ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ("http://100.100.100.200/latest/meta-data/", "a cloud metadata address"),
    ("{origin}/to-listener", "a loopback address"),  # a redirect from an allowed host
    ("{origin}/to-metadata", "a cloud metadata address"),
])
def test_the_outbound_guard_refuses_internal_targets_without_connecting(
    sdk, echo_app, origin, listener, url, reason
):
    url = url.format(port=listener.port, origin=origin)
    assert listener.connections() == 0
    response = call(sdk, echo_app, image_list=[url])
    assert response.status_code == 400 and response.code == "InvalidParameter"
    assert "input.image_list[0]" in response.message and reason in response.message
    assert "OPENBAILIAN_OUTBOUND_ALLOW" in response.message
    assert listener.connections() == 0  # nothing reached the refused address


def test_file_list_needs_the_file_parsing_switch(sdk, live, origin):
    app_id = live.app()
    response = call(sdk, app_id, file_list=[f"{origin}/notes.txt"])
    assert response.status_code == 400 and "file_parsing" in response.message
    response = call(sdk, app_id, image_list=[f"{origin}/price.png"])
    assert response.status_code == 400 and "file_parsing" in response.message


def test_too_many_urls_are_refused(sdk, echo_app, origin, live):
    many = [f"{origin}/notes.txt"] * (live.settings.files_max_per_call + 1)
    response = call(sdk, echo_app, file_list=many)
    assert response.status_code == 400 and "at most" in response.message


def test_a_refused_call_stores_no_turn(sdk, echo_app, origin):
    first = call(sdk, echo_app)
    session_id = first.output.session_id
    refused = call(sdk, echo_app, session_id=session_id, image_list=[f"{origin}/page.html"])
    assert refused.status_code == 400
    follow = Application.call(api_key=sdk.key(), app_id=echo_app, prompt="next", session_id=session_id)
    contents = [m["content"] for m in json.loads(follow.output.text)["messages"]]
    assert contents.count(QUESTION) == 1  # only the first call's turn


def test_a_streamed_call_is_refused_before_the_stream_starts(sdk, echo_app, origin):
    responses = list(call(sdk, echo_app, stream=True, image_list=[f"{origin}/page.html"]))
    assert len(responses) == 1
    assert responses[0].status_code == 400 and "input.image_list[0]" in responses[0].message
    streamed = list(call(sdk, echo_app, stream=True, incremental_output=True, file_list=[f"{origin}/notes.txt"]))
    assert all(r.status_code == 200 for r in streamed)
    assert "三万元" in "".join(r.output.text for r in streamed)
