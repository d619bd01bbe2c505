"""The playground's stop button, a failed document with its reason, refused uploads, and the
language the console speaks."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, select

from openbailian.storage.db import sync_url
from openbailian.storage.models import SessionMessage
from tests.console.conftest import shoot, sign_in
from tests.console.test_journey import create_base_with
from tests.support import LiveServer


def test_stop_keeps_the_cut_answer_and_the_session_remembers_it(page: Page, console_server: LiveServer) -> None:
    server = console_server
    sign_in(page, server)
    app_id = server.app(workspace="default", model="slow-echo", instructions="慢慢回答。")
    page.goto(f"{server.url}/console/apps/{app_id}/playground")
    page.get_by_test_id("target").select_option("published")
    page.get_by_test_id("prompt").fill("first question")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").last
    expect(answer.locator(".answer")).not_to_be_empty()  # the first pieces streamed in...
    expect(answer).to_have_class(re.compile("streaming"))  # ...while the model is still going
    page.get_by_test_id("stop").click()
    expect(answer).to_have_attribute("data-finish", "stopped")
    cut_text = answer.locator(".answer").inner_text()
    assert cut_text and '"first question"' not in cut_text  # cut before the end of the echo
    expect(page.get_by_test_id("stop")).to_be_hidden()

    page.get_by_test_id("prompt").fill("second question")
    page.get_by_test_id("send").click()
    second = page.get_by_test_id("answer").nth(1)
    expect(second).to_have_attribute("data-finish", "stop", timeout=30_000)
    # the echo model shows its context: the first question and the cut answer came back as history
    context = second.locator(".answer").inner_text()
    assert context.index('"first question"') < context.index('"assistant"') < context.index('"second question"')
    engine = create_engine(sync_url(server.settings.resolved_database_url))
    with engine.connect() as connection:
        rows = connection.execute(select(SessionMessage.role, SessionMessage.content, SessionMessage.cut)
                                  .order_by(SessionMessage.seq)).all()
    engine.dispose()
    assert [(r.role, r.cut) for r in rows] == [("user", False), ("assistant", True), ("user", False), ("assistant", False)]
    assert rows[1].content and not rows[1].content.endswith("]}")  # stored as far as it got
    assert json.loads(rows[3].content)["messages"][2]["content"] == rows[1].content


def test_a_failed_document_shows_its_reason_and_can_be_retried_or_deleted(
    page: Page, console_server: LiveServer, tmp_path: Path
) -> None:
    server = console_server
    sign_in(page, server)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    good = tmp_path / "notes.txt"
    good.write_text("售后电话：400-000-0000。", encoding="utf-8")
    refused = tmp_path / "tool.exe"
    refused.write_bytes(b"MZ\x90\x00")
    create_base_with(page, server, "mixed", [broken, good, refused])
    expect(page.get_by_test_id("upload-progress")).to_contain_text("tool.exe")
    expect(page.get_by_test_id("upload-progress").locator(".error")).not_to_be_empty()
    row = page.locator("[data-document='broken.pdf']")
    expect(row.get_by_test_id("status")).to_have_text("PARSE_FAILED", timeout=120_000)
    expect(row.get_by_test_id("reason")).not_to_be_empty()
    expect(page.locator("[data-document='notes.txt']").get_by_test_id("status")).to_have_text("FILE_IS_READY", timeout=120_000)
    assert page.locator("[data-document='tool.exe']").count() == 0
    shoot(page, "knowledge-failed")
    row.get_by_test_id("retry").click()
    row = page.locator("[data-document='broken.pdf']")
    expect(row.get_by_test_id("status")).to_have_text("PARSE_FAILED", timeout=120_000)  # tried again, same end
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_test_id("delete-doc").click()
    expect(page.locator("[data-document='broken.pdf']")).to_have_count(0)
    expect(page.locator("[data-document='notes.txt']")).to_have_count(1)


def test_chinese_first_when_the_browser_asks_and_switchable(browser: Browser, console_server: LiveServer) -> None:
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    try:
        page.goto(f"{console_server.url}/console/sign-in")
        expect(page.get_by_role("heading")).to_have_text("登录")
        page.get_by_test_id("lang-en").click()
        expect(page.get_by_role("heading")).to_have_text("Sign in")
        sign_in(page, console_server)
        expect(page.get_by_role("link", name="Knowledge")).to_be_visible()
        page.get_by_test_id("lang-zh").click()
        expect(page.get_by_role("link", name="知识库")).to_be_visible()
        expect(page).to_have_url(re.compile("/console/apps"))
        shoot(page, "apps-zh")
    finally:
        context.close()


def test_published_versions_are_listed_and_one_click_rolls_back(page: Page, console_server: LiveServer) -> None:
    server = console_server
    sign_in(page, server)
    app_id = server.app(workspace="default", model="echo", instructions="第一版")

    def published_instructions() -> str:
        answer = server.call(app_id, {"input": {"prompt": "hi"}}, workspace="default").json()
        return json.loads(answer["output"]["text"])["messages"][0]["content"]

    page.goto(f"{server.url}/console/apps/{app_id}")
    page.get_by_test_id("instructions").fill("第二版")
    page.get_by_test_id("publish").click()
    expect(page.get_by_test_id("published-version")).to_have_text(re.compile("2$"))
    assert published_instructions() == "第二版"
    page.get_by_test_id("rollback-1").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    expect(page.get_by_test_id("published-version")).to_have_text(re.compile("3$"))
    expect(page.get_by_test_id("instructions")).to_have_value("第一版")
    assert published_instructions() == "第一版"
    versions = page.get_by_test_id("versions").locator("tbody tr")
    expect(versions).to_have_count(3)
    expect(versions.first).to_contain_text("v3")
    shoot(page, "app-versions")


def test_a_session_file_attached_in_the_playground_reaches_the_answer(
    page: Page, console_server: LiveServer, tmp_path: Path
) -> None:
    server = console_server
    sign_in(page, server)
    app_id = server.app(workspace="default", model="echo", file_parsing=True)
    notes = tmp_path / "会议纪要.txt"
    notes.write_text("会议决定：发布日期定在十二月八日。", encoding="utf-8")
    page.goto(f"{server.url}/console/apps/{app_id}/playground")
    page.get_by_test_id("target").select_option("published")
    page.get_by_test_id("session-file").set_input_files(str(notes))
    expect(page.get_by_test_id("session-file-status")).to_have_attribute("data-status", "FILE_IS_READY", timeout=120_000)
    page.get_by_test_id("prompt").fill("发布日期是哪天？")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").last
    expect(answer).to_have_attribute("data-finish", "stop")
    expect(answer).to_contain_text("发布日期定在十二月八日")  # the file's text was in the context
    refused = tmp_path / "run.sh"
    refused.write_text("#!/bin/sh\necho hi\n", encoding="utf-8")
    page.get_by_test_id("session-file").set_input_files(str(refused))
    expect(page.get_by_test_id("session-files").locator(".error")).not_to_be_empty()


def test_the_retrieval_test_filters_by_tags_and_shows_scores(page: Page, console_server: LiveServer, tmp_path: Path) -> None:
    server = console_server
    sign_in(page, server)
    page.goto(f"{server.url}/console/knowledge")
    page.get_by_test_id("new-base-name").fill("政策")
    page.get_by_test_id("create-base").click()
    for name, tag, text in [("退货.txt", "售后", "退货政策：七天无理由退货。"), ("保修.txt", "保修", "保修政策：整机保修一年。")]:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        page.get_by_test_id("upload-tags").fill(tag)
        page.get_by_test_id("upload-input").set_input_files(str(path))
        page.get_by_test_id("upload").click()
        expect(page.locator(f"[data-document='{name}']").get_by_test_id("status")).to_have_text(
            "FILE_IS_READY", timeout=120_000
        )
    page.get_by_test_id("query").fill("政策")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("hits").locator("li")).to_have_count(2)
    expect(page.get_by_test_id("hits")).to_contain_text("得分" if "zh" in page.url else "Score")
    page.get_by_test_id("filter-tags").fill("保修")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("hits").locator("li")).to_have_count(1)
    expect(page.get_by_test_id("hits")).to_contain_text("整机保修一年")
    page.get_by_test_id("filter-meta").fill("region")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("error")).to_contain_text("not key=value")
    page.go_back()
    page.get_by_test_id("filter-meta").fill("region=华东")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("error")).to_contain_text("region")  # no document has that field
