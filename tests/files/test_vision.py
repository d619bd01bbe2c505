"""Image session files: as images for a vision model, as OCR text for the others."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests.files.conftest import make_png, upload, wait_final
from tests.support import POSTGRES_URL, LiveServer, PostgresDatabase, make_settings


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose "vl" model reads images (an echo that shows what it was given)."""
    home = tmp_path_factory.mktemp("vision-home")
    database = PostgresDatabase(POSTGRES_URL) if POSTGRES_URL else None
    url = database.create() if database else None
    server = LiveServer(make_settings(home, url, models={"vl": {"provider": "echo", "vision": True}})).start()
    yield server
    server.stop()
    if database:
        database.drop()


@pytest.fixture(scope="module")
def picture(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    data = make_png(tmp_path_factory.mktemp("img") / "price.png", ["Zephyr Z9 2499 yuan"])
    file_id = upload(live, "price.png", data)
    assert wait_final(live, file_id)["Status"] == "FILE_IS_READY"
    return file_id, data


def ask(live: LiveServer, model: str, file_id: str) -> list[dict]:
    app_id = live.app(model=model, file_parsing=True)
    response = live.call(app_id, {
        "input": {"prompt": "这张图里的手机多少钱？"},
        "parameters": {"rag_options": {"session_file_ids": [file_id]}},
    })
    assert response.status_code == 200, response.text
    return json.loads(response.json()["output"]["text"])["messages"]


def test_a_vision_model_gets_the_image_itself(live, picture):
    file_id, data = picture
    messages = ask(live, "vl", file_id)
    question = messages[-1]
    assert question["role"] == "user"
    text, image = question["content"]
    assert text == {"type": "text", "text": "这张图里的手机多少钱？"}
    assert image["type"] == "image_url"
    url = image["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == data
    assert all("Zephyr" not in str(m["content"]) for m in messages if m["role"] == "system")


def test_other_models_get_the_ocr_text(live, picture):
    file_id, _ = picture
    messages = ask(live, "echo", file_id)
    assert messages[-1]["content"] == "这张图里的手机多少钱？"
    system = messages[0]["content"]
    assert "<session_files>" in system and "2499" in system


def test_the_stored_session_keeps_the_question_as_text(live, picture):
    file_id, _ = picture
    app_id = live.app(model="vl", file_parsing=True)
    first = live.call(app_id, {
        "input": {"prompt": "看图"}, "parameters": {"rag_options": {"session_file_ids": [file_id]}},
    }).json()
    follow = live.call(app_id, {"input": {"prompt": "再说一遍", "session_id": first["output"]["session_id"]}})
    history = json.loads(follow.json()["output"]["text"])["messages"]
    assert history[0] == {"role": "user", "content": "看图"}
