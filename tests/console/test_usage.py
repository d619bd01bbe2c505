"""Usage per app and day: calls made with the official dashscope SDK (answered, streamed, and
one refused for an invalid parameter) are what the console's usage page shows; a workspace key
sees only its own workspace's usage."""

from __future__ import annotations

from datetime import UTC, datetime

import dashscope
from dashscope import Application
from playwright.sync_api import Page, expect

from tests.console.conftest import shoot, sign_in
from tests.support import LiveServer


def _tokens(response) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    models = response.usage.models
    return sum(m.input_tokens for m in models), sum(m.output_tokens for m in models)


def test_sdk_calls_and_a_failed_call_show_on_the_usage_page(
    page: Page, console_server: LiveServer, monkeypatch
) -> None:
    server = console_server
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    key, other_key = server.key("ws1"), server.key("ws2")
    app_id = server.app(workspace="ws1", name="导购")
    other_app = server.app(workspace="ws2", name="客服")

    tokens = [0, 0]
    for prompt in ("你好", "推荐一款手机"):
        answered = Application.call(api_key=key, app_id=app_id, prompt=prompt)
        assert answered.status_code == 200, answered.message
        tokens = [a + b for a, b in zip(tokens, _tokens(answered), strict=True)]
    last = None
    for last in Application.call(api_key=key, app_id=app_id, prompt="流式", stream=True, incremental_output=True):
        assert last.status_code == 200, last.message
    assert last is not None
    tokens = [a + b for a, b in zip(tokens, _tokens(last), strict=True)]
    assert all(tokens)
    failed = Application.call(api_key=key, app_id=app_id, prompt="你好", temperature=5)
    assert failed.status_code == 400 and failed.code == "InvalidParameter"
    # Not counted: another workspace's app called with ws1's key, an app that does not exist.
    assert Application.call(api_key=key, app_id=other_app, prompt="你好").status_code == 404
    assert Application.call(api_key=key, app_id="f" * 32, prompt="你好").status_code == 404
    assert Application.call(api_key=other_key, app_id=other_app, prompt="你好").status_code == 200

    today = datetime.now(UTC).date().isoformat()
    sign_in(page, server, key)  # ws1's key: ws1's usage only
    page.get_by_role("link", name="Usage").click()
    row = page.locator(f"[data-testid=usage-row][data-app='{app_id}'][data-day='{today}']")
    expect(row.get_by_test_id("calls")).to_have_text("4")
    expect(row.get_by_test_id("errors")).to_have_text("1")
    expect(row.get_by_test_id("input-tokens")).to_have_text(str(tokens[0]))
    expect(row.get_by_test_id("output-tokens")).to_have_text(str(tokens[1]))
    expect(row).to_contain_text("导购")
    expect(page.get_by_test_id("usage-row")).to_have_count(1)  # nothing of ws2, nothing uncounted
    assert other_app not in page.content()
    expect(page.get_by_test_id("total-calls")).to_have_text("4")
    expect(page.get_by_test_id("total-errors")).to_have_text("1")
    bar = page.locator(f"[data-testid=bar][data-day='{today}']")
    expect(bar).to_have_attribute("data-calls", "4")
    expect(bar).to_have_attribute("data-errors", "1")
    expect(bar.locator("rect.ok")).to_have_count(1)
    expect(bar.locator("rect.bad")).to_have_count(1)
    expect(page.get_by_test_id("bar")).to_have_count(14)  # the last 14 UTC days, empty ones too
    shoot(page, "usage")

    page.get_by_test_id("range-7").click()
    expect(page.get_by_test_id("bar")).to_have_count(7)
    refused = page.goto(f"{server.url}/console/usage?days=1000")
    assert refused is not None and refused.status == 400  # a clear refusal, not a 500
    expect(page.get_by_test_id("error")).to_contain_text("days")


def test_the_administrator_sees_each_workspace_s_usage(page: Page, console_server: LiveServer, monkeypatch) -> None:
    server = console_server
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    app_id = server.app(workspace="ws2", name="客服")
    assert Application.call(api_key=server.key("ws2"), app_id=app_id, prompt="你好").status_code == 200
    sign_in(page, server)
    page.get_by_test_id("workspace").fill("ws2")
    page.get_by_test_id("switch-workspace").click()
    page.goto(f"{server.url}/console/usage")
    expect(page.locator(f"[data-testid=usage-row][data-app='{app_id}']").get_by_test_id("calls")).to_have_text("1")
    page.get_by_test_id("workspace").fill("ws1")
    page.get_by_test_id("switch-workspace").click()
    page.goto(f"{server.url}/console/usage")
    expect(page.get_by_test_id("usage-row")).to_have_count(0)
    expect(page.get_by_text("No calls in this period.")).to_be_visible()
