"""Memory bodies and their facts, and plugins (register, test a call, which apps use them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.console.conftest import shoot, sign_in
from tests.support import LiveServer, make_settings, serve_in_thread


def test_memory_facts_are_added_edited_deleted_and_reach_the_playground(
    page: Page, console_server: LiveServer
) -> None:
    server = console_server
    sign_in(page, server)
    page.goto(f"{server.url}/console/memory")
    page.get_by_test_id("new-memory").fill("小王的偏好")
    page.get_by_test_id("create-memory").click()
    memory_id = page.get_by_test_id("memory-id").inner_text()
    page.get_by_test_id("new-fact").fill("小王喜欢喝绿茶")
    page.get_by_test_id("add-fact").click()
    expect(page.get_by_test_id("fact-content")).to_have_value("小王喜欢喝绿茶")
    page.get_by_test_id("fact-content").fill("小王喜欢喝红茶")
    page.get_by_test_id("fact-save").click()
    expect(page.get_by_test_id("fact-content")).to_have_value("小王喜欢喝红茶")
    page.get_by_test_id("new-fact").fill("小王住在杭州")
    page.get_by_test_id("add-fact").click()
    expect(page.get_by_test_id("fact-content")).to_have_count(2)
    shoot(page, "memory")
    stored = server.http.get(f"/manage/v1/memories/{memory_id}/nodes", headers=server.auth("default"))
    assert sorted(i["content"] for i in stored.json()["items"]) == ["小王住在杭州", "小王喜欢喝红茶"]

    app_id = server.app(workspace="default", model="echo", memory_enabled=True)
    page.goto(f"{server.url}/console/apps/{app_id}/playground")
    page.get_by_test_id("memory").select_option(memory_id)
    page.get_by_test_id("prompt").fill("小王喜欢喝什么茶？")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").last
    expect(answer).to_have_attribute("data-finish", "stop")
    expect(answer).to_contain_text("小王喜欢喝红茶")  # recalled into the context the echo model shows

    page.goto(f"{server.url}/console/memory/{memory_id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("[data-fact]").filter(has=page.locator("[value='小王住在杭州']")).get_by_test_id("fact-delete").click()
    expect(page.get_by_test_id("fact-content")).to_have_count(1)


def _weather(request):  # type: ignore[no-untyped-def]
    return JSONResponse({
        "city": request.query_params.get("city"), "weather": "晴", "temperature": 25,
        "unit": request.headers.get("x-unit"),
        # whether the service token arrived (an observation never shows a token: it is masked)
        "authorized": request.headers.get("authorization") == "Bearer sekret-token-123",
    })


def test_a_plugin_is_registered_tested_and_shows_the_apps_using_it(page: Page, tmp_path: Path) -> None:
    with serve_in_thread(Starlette(routes=[Route("/weather", _weather)])) as weather_url:
        host = weather_url.removeprefix("http://")
        server = LiveServer(make_settings(tmp_path / "home", outbound_allow=host)).start()
        try:
            sign_in(page, server)
            page.goto(f"{server.url}/console/plugins")
            expect(page.get_by_test_id("plugins")).to_contain_text("builtin:calculator")
            page.get_by_test_id("plugin-spec").fill("{not json")
            page.get_by_test_id("register-plugin").click()
            expect(page.get_by_test_id("error")).to_contain_text("not valid JSON")
            page.goto(f"{server.url}/console/plugins")
            spec = {
                "name": "get_weather", "title": "天气", "description": "城市天气", "method": "GET",
                "url": f"{weather_url}/weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }
            page.get_by_test_id("plugin-spec").fill(json.dumps(spec, ensure_ascii=False))
            page.get_by_test_id("register-plugin").click()
            tool_id = page.get_by_test_id("tool-id").inner_text()
            page.get_by_test_id("plugin-arguments").fill('{"city": "杭州"}')
            page.get_by_test_id("plugin-test").click()
            expect(page.get_by_test_id("observation")).to_contain_text("杭州")
            expect(page.get_by_test_id("observation")).to_contain_text("晴")

            _edit_plugin(page, server, tool_id, weather_url)

            app_id = server.app(workspace="default", name="天气助手", model="echo", plugin_ids=[tool_id])
            page.goto(f"{server.url}/console/plugins/{tool_id}")
            expect(page.get_by_test_id("used-by")).to_have_text("天气助手")
            shoot(page, "plugin")
            page.goto(f"{server.url}/console/apps/{app_id}")
            expect(page.locator(f"input[name=plugin][value='{tool_id}']")).to_be_checked()
            expect(page).to_have_url(re.compile(app_id))
        finally:
            server.stop()


def _edit_plugin(page: Page, server: LiveServer, tool_id: str, weather_url: str) -> None:
    """The edit form: same checks as the management API, the stored spec unchanged on a refusal,
    a service token set once and never shown, an empty token field keeping it."""
    stored = lambda: server.http.get(f"/manage/v1/plugins/{tool_id}", headers=server.auth("default")).json()["spec"]  # noqa: E731
    before = stored()
    page.get_by_test_id("plugin-url").fill("http://169.254.169.254/latest/meta-data")
    page.get_by_test_id("plugin-save").click()
    expect(page.get_by_test_id("error")).to_contain_text("OPENBAILIAN_OUTBOUND_ALLOW")
    page.goto(f"{server.url}/console/plugins/{tool_id}")
    page.get_by_test_id("plugin-headers").fill('["not", "an object"]')
    page.get_by_test_id("plugin-save").click()
    expect(page.get_by_test_id("error")).to_contain_text("must be a JSON object")
    page.goto(f"{server.url}/console/plugins/{tool_id}")
    page.get_by_test_id("plugin-headers").fill('{"X-Unit": 1}')
    page.get_by_test_id("plugin-save").click()
    expect(page.get_by_test_id("error")).to_contain_text("headers")
    page.goto(f"{server.url}/console/plugins/{tool_id}")
    page.get_by_test_id("plugin-auth-type").select_option("service_token")
    page.get_by_test_id("plugin-save").click()  # no token yet: refused
    expect(page.get_by_test_id("error")).to_contain_text("auth.token is required")
    assert stored() == before

    page.goto(f"{server.url}/console/plugins/{tool_id}")
    expect(page.get_by_test_id("token-state")).to_have_text("not set")
    page.get_by_test_id("plugin-description").fill("查询城市天气（摄氏度）")
    page.get_by_test_id("plugin-headers").fill('{"X-Unit": "C"}')
    page.get_by_test_id("plugin-auth-type").select_option("service_token")
    page.get_by_test_id("plugin-token").fill("sekret-token-123")
    page.get_by_test_id("plugin-save").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    expect(page.get_by_test_id("token-state")).to_have_text("set")
    expect(page.get_by_test_id("plugin-token")).to_have_value("")
    assert "sekret-token-123" not in page.content()
    after = stored()
    assert after["description"] == "查询城市天气（摄氏度）" and after["headers"] == {"X-Unit": "C"}
    assert after["auth"]["type"] == "service_token" and after["auth"]["token"] == "***"

    page.get_by_test_id("plugin-description").fill("城市天气")  # the token field left empty
    page.get_by_test_id("plugin-save").click()
    expect(page.get_by_test_id("token-state")).to_have_text("set")
    page.get_by_test_id("plugin-arguments").fill('{"city": "杭州"}')
    page.get_by_test_id("plugin-test").click()
    observation = page.get_by_test_id("observation")
    expect(observation).to_contain_text('"authorized":true')  # the kept token was sent
    expect(observation).to_contain_text('"unit":"C"')
    assert stored()["url"] == f"{weather_url}/weather"
