"""A new user's journey through the console, in a real browser against a live server:
sign in, create a key, build a knowledge base from a .docx, create an app with a {{city}}
variable linked to it, chat in the playground, publish, then call the published app with the
official dashscope SDK and find the configuration the console set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dashscope
from dashscope import Application
from playwright.sync_api import Page, expect

from tests.console.conftest import cookies, shoot, sign_in
from tests.knowledge.corpus import make_docx
from tests.support import LiveServer

READY = re.compile("FILE_IS_READY")


def create_key(page: Page, server: LiveServer, name: str) -> str:
    page.goto(f"{server.url}/console/keys")
    page.get_by_test_id("new-key-name").fill(name)
    page.get_by_test_id("create-key").click()
    key = page.get_by_test_id("new-key").inner_text()
    assert re.fullmatch(r"sk-[0-9a-f]{32}", key)
    assert page.get_by_test_id("new-access-key-secret").inner_text()  # its AccessKey pair, shown once too
    return key


def create_base_with(page: Page, server: LiveServer, name: str, files: list[Path]) -> str:
    page.goto(f"{server.url}/console/knowledge")
    page.get_by_test_id("new-base-name").fill(name)
    page.get_by_test_id("create-base").click()
    base_id = page.get_by_test_id("base-id").inner_text()
    page.get_by_test_id("upload-input").set_input_files([str(f) for f in files])
    page.get_by_test_id("upload").click()
    return base_id


def test_journey_from_sign_in_to_a_published_app_called_by_the_sdk(
    page: Page, console_server: LiveServer, tmp_path: Path, monkeypatch
) -> None:
    server = console_server
    page.goto(f"{server.url}/console/")
    shoot(page, "sign-in")
    sign_in(page, server)
    session_cookie = cookies(page)["ob_console"]
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"

    key = create_key(page, server, "journey")
    secret = page.get_by_test_id("new-access-key-secret").inner_text()
    expect(page.get_by_test_id("keys")).to_contain_text("journey")
    shoot(page, "keys")
    page.goto(f"{server.url}/console/keys")  # shown once: a fresh view of the page never shows it again
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert key not in page.content() and secret not in page.content()

    docx = make_docx(tmp_path / "百炼系列手机产品介绍.docx")
    base_id = create_base_with(page, server, "手机", [docx])
    expect(page.get_by_test_id("upload-progress").locator("progress")).to_have_attribute("value", "100")
    row = page.locator("[data-document='百炼系列手机产品介绍.docx']")
    expect(row.get_by_test_id("status")).to_have_text(READY, timeout=120_000)  # the page updates itself
    page.get_by_test_id("query").fill("3000元以下的手机")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("hits")).to_contain_text("百炼 Zephyr Z9")
    shoot(page, "knowledge-base")

    page.goto(f"{server.url}/console/apps")
    page.get_by_test_id("new-app-name").fill("导购")
    page.get_by_test_id("new-app-model").select_option("echo")
    page.get_by_test_id("create-app").click()
    app_id = page.get_by_test_id("app-id").inner_text()
    page.get_by_test_id("instructions").fill("你是{{city}}的手机导购，只推荐知识库里的手机。")
    page.get_by_test_id("var-default-city").fill("北京")  # the row appeared as the variable was typed
    page.get_by_test_id("switch-knowledge_enabled").check()
    page.get_by_test_id("switch-show_sources").check()
    page.get_by_test_id("kb-手机").check()
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    expect(page.get_by_test_id("var-default-city")).to_have_value("北京")
    expect(page.get_by_test_id("snippet-Python SDK")).to_contain_text(f'app_id="{app_id}"')
    expect(page.get_by_test_id("snippet-curl")).to_contain_text(f"{server.url}/api/v1/apps/{app_id}/completion")
    assert key not in page.content()
    shoot(page, "app-editor")

    page.get_by_test_id("open-playground").click()
    page.get_by_test_id("prompt").fill("请帮我推荐一款3000元以下的手机")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").last
    expect(answer).to_contain_text("你是北京的手机导购")  # the echo model shows the system message it got
    expect(answer.get_by_test_id("source").first).to_contain_text("百炼系列手机产品介绍.docx")
    expect(answer).to_have_attribute("data-finish", "stop")
    session_id = page.get_by_test_id("session-id").inner_text()
    page.get_by_test_id("prompt").fill("第二个问题")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer")).to_have_count(2)
    expect(page.get_by_test_id("answer").last).to_have_attribute("data-finish", "stop")
    # the same session: the second turn's context holds the first question
    expect(page.get_by_test_id("answer").last).to_contain_text("请帮我推荐一款3000元以下的手机")
    assert page.get_by_test_id("session-id").inner_text() == session_id
    shoot(page, "playground")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("answer")).to_have_count(0)
    expect(page.get_by_test_id("session-id")).to_have_text("—")

    page.goto(f"{server.url}/console/apps/{app_id}")
    page.get_by_test_id("publish").click()
    expect(page.get_by_test_id("published-version")).to_contain_text("1")
    expect(page.get_by_test_id("draft-state")).not_to_have_class(re.compile("warn"))

    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    response = Application.call(api_key=key, app_id=app_id, prompt="请帮我推荐一款3000元以下的手机")
    assert response.status_code == 200, response.message
    system = json.loads(response.output.text)["messages"][0]["content"]
    assert system.startswith("你是北京的手机导购，只推荐知识库里的手机。")
    assert "百炼 Zephyr Z9" in system
    assert [r["doc_name"] for r in response.output.doc_references][:1] == ["百炼系列手机产品介绍.docx"]
    assert response.output.doc_references[0]["index_id"] == base_id
    other = Application.call(
        api_key=key, app_id=app_id, prompt="推荐", biz_params={"user_prompt_params": {"city": "上海"}}
    )
    assert json.loads(other.output.text)["messages"][0]["content"].startswith("你是上海的手机导购")
