"""Bad input in the console's forms and fetches: a clear message on a console page (or JSON for
the page's fetches) with the right status, never a 500, and nothing stored changed. Plus the
playground's draft/published choice and folded thoughts."""

from __future__ import annotations

import json

import httpx
from playwright.sync_api import Page, expect

from tests.console.conftest import cookies, sign_in
from tests.support import LiveServer


def _client(page: Page, server: LiveServer) -> tuple[httpx.Client, str]:
    csrf = page.locator("body").get_attribute("data-csrf") or ""
    return httpx.Client(base_url=server.url, cookies={"ob_console": cookies(page)["ob_console"]["value"]}), csrf


def test_bad_app_settings_are_refused_with_their_reason_and_the_draft_is_unchanged(
    page: Page, console_server: LiveServer
) -> None:
    server = console_server
    sign_in(page, server)
    app_id = server.app(workspace="default", model="echo", instructions="原样")
    page.goto(f"{server.url}/console/apps/{app_id}")
    page.locator("input[name=temperature]").fill("hot")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("error")).to_contain_text("'temperature' must be a number")
    page.goto(f"{server.url}/console/apps/{app_id}")
    page.locator("input[name=temperature]").fill("7")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("error")).to_contain_text("temperature")
    client, csrf = _client(page, server)
    with client:
        base = {"csrf": csrf, "name": "x", "instructions": "改了"}
        unknown_model = client.post(f"/console/apps/{app_id}", data={**base, "model": "no-such-model"})
        foreign_base = client.post(f"/console/apps/{app_id}", data={**base, "model": "echo", "kb": "nope"})
        long_name = client.post(f"/console/apps/{app_id}", data={**base, "model": "echo", "name": "n" * 500})
        missing = client.post(f"/console/apps/{'f' * 32}", data={**base, "model": "echo"})
        no_name = client.post("/console/apps", data={"csrf": csrf, "model": "echo"})
        chat_bad = client.post(f"/console/apps/{app_id}/chat", json={"prompt": 5}, headers={"X-CSRF-Token": csrf})
        chat_junk = client.post(
            f"/console/apps/{app_id}/chat", content=b"{not json", headers={"X-CSRF-Token": csrf,
                                                                         "Content-Type": "application/json"},
        )
        chat_big = client.post(
            f"/console/apps/{app_id}/chat", json={"prompt": "x" * 300_000}, headers={"X-CSRF-Token": csrf}
        )
        rollback_unknown = client.post(f"/console/apps/{app_id}/rollback", data={"csrf": csrf, "version": "9"})
        rollback_junk = client.post(f"/console/apps/{app_id}/rollback", data={"csrf": csrf, "version": "abc"})
    assert unknown_model.status_code == 400 and "no-such-model" in unknown_model.text
    assert foreign_base.status_code == 404 and "nope" in foreign_base.text
    assert long_name.status_code == 400
    assert missing.status_code == 404 and "AppNotFound" in missing.text
    assert no_name.status_code == 400
    assert chat_bad.status_code == 400 and chat_bad.json()["code"] == "InvalidParameter"
    assert chat_junk.status_code == 400 and "not valid JSON" in chat_junk.json()["message"]
    assert chat_big.status_code == 413 and chat_big.json()["code"] == "RequestTooLarge"
    assert rollback_unknown.status_code == 404
    assert rollback_junk.status_code == 400
    app = server.http.get(f"/manage/v1/apps/{app_id}", headers=server.auth("default")).json()
    assert app["draft"]["instructions"] == "原样" and app["name"] == "test"


def test_the_playground_chats_with_the_draft_or_the_published_version_and_folds_thoughts(
    page: Page, console_server: LiveServer
) -> None:
    server = console_server
    sign_in(page, server)
    app_id = server.app(workspace="default", model="echo", instructions="已发布的提示词")
    page.goto(f"{server.url}/console/apps/{app_id}")
    page.get_by_test_id("instructions").fill("草稿的提示词")
    page.get_by_test_id("switch-enable_thinking").check()
    page.get_by_test_id("save").click()
    page.get_by_test_id("open-playground").click()

    page.get_by_test_id("prompt").fill("你好")
    page.get_by_test_id("send").click()
    draft_answer = page.get_by_test_id("answer").last
    expect(draft_answer).to_have_attribute("data-finish", "stop")
    assert json.loads(draft_answer.locator(".answer").inner_text().replace("\n", ""))["messages"][0]["content"] == "草稿的提示词"
    thoughts = draft_answer.locator("details.thoughts")
    expect(thoughts).to_be_visible()
    expect(thoughts).not_to_have_attribute("open", "")  # folded
    expect(thoughts.locator(".reasoning")).to_be_hidden()
    thoughts.locator("summary").click()
    expect(thoughts.locator(".reasoning")).to_contain_text("I will repeat them as JSON")

    page.get_by_test_id("target").select_option("published")  # a new conversation
    expect(page.get_by_test_id("answer")).to_have_count(0)
    page.get_by_test_id("prompt").fill("你好")
    page.get_by_test_id("send").click()
    published_answer = page.get_by_test_id("answer").last
    expect(published_answer).to_have_attribute("data-finish", "stop")
    expect(published_answer).to_contain_text("已发布的提示词")
    expect(published_answer.locator("details.thoughts")).to_be_hidden()  # thinking is off there
