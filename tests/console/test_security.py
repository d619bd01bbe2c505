"""What the console must never do: run a document's or an answer's script, let another site
change anything, act for a signed-out or expired session, or show one workspace to another's key."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, update

from openbailian.storage.console_models import ConsoleSession
from openbailian.storage.db import sync_url
from tests.console.conftest import ADMIN, cookies, sign_in
from tests.console.test_journey import create_base_with
from tests.support import LiveServer

HOSTILE = (
    "<script>window.__pwned = 1</script> <img src=x onerror=\"window.__pwned = 2\"> "
    "[click me](javascript:window.__pwned=3) **bold**"
)


def test_a_script_in_an_answer_or_a_document_is_shown_as_text_and_never_runs(
    page: Page, console_server: LiveServer, tmp_path: Path
) -> None:
    server = console_server
    sign_in(page, server)
    hostile_doc = tmp_path / "hostile.md"
    hostile_doc.write_text("# 注意事项\n\n" + HOSTILE + "\n\n退货政策：七天无理由退货。\n", encoding="utf-8")
    base_id = create_base_with(page, server, "hostile", [hostile_doc])
    expect(page.get_by_test_id("status")).to_have_text("FILE_IS_READY", timeout=120_000)
    page.get_by_test_id("query").fill("退货政策 window.__pwned")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("hits")).to_contain_text("<script>window.__pwned = 1</script>")
    assert page.evaluate("window.__pwned") is None

    app_id = server.app(workspace="default", model="echo", knowledge_enabled=True, show_sources=True,
                        knowledge_base_ids=[base_id])
    page.goto(f"{server.url}/console/apps/{app_id}/playground")
    page.get_by_test_id("prompt").fill(HOSTILE + " 退货政策")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").last
    expect(answer).to_have_attribute("data-finish", "stop")
    expect(answer).to_contain_text("<script>window.__pwned = 1</script>")  # shown, as text
    expect(answer.locator("strong").first).to_contain_text("bold")  # markdown is rendered...
    assert answer.locator("script, img, [onerror]").count() == 0  # ...raw HTML is not
    assert answer.locator("a[href^='javascript']").count() == 0
    expect(answer.get_by_test_id("source").first).to_contain_text("hostile.md")
    assert page.evaluate("window.__pwned") is None


def _signed_in_http(page: Page, server: LiveServer) -> tuple[httpx.Client, str]:
    """An HTTP client holding the browser's session cookie, and the page's CSRF token."""
    csrf = page.locator("body").get_attribute("data-csrf") or ""
    client = httpx.Client(base_url=server.url, cookies={"ob_console": cookies(page)["ob_console"]["value"]})
    return client, csrf


def _app_names(server: LiveServer, workspace: str = "default") -> list[str]:
    response = server.http.get("/manage/v1/apps", headers=server.auth(workspace))
    return [a["name"] for a in response.json()["apps"]]


def test_changes_without_the_csrf_token_or_from_another_origin_are_refused(
    page: Page, console_server: LiveServer
) -> None:
    server = console_server
    sign_in(page, server)
    client, csrf = _signed_in_http(page, server)
    with client:
        missing = client.post("/console/apps", data={"name": "forged", "model": "echo"})
        wrong = client.post("/console/apps", data={"name": "forged", "model": "echo", "csrf": "x" * 43})
        foreign = client.post(
            "/console/apps", data={"name": "forged", "model": "echo", "csrf": csrf},
            headers={"Origin": "https://evil.example"},
        )
        chat = client.post(f"/console/apps/{'0' * 32}/chat", json={"prompt": "hi"})
        ok = client.post("/console/apps", data={"name": "mine", "model": "echo", "csrf": csrf})
    for refused in (missing, wrong, foreign):
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    assert chat.status_code == 403 and chat.json()["code"] == "AccessDenied"
    assert ok.status_code == 303
    assert _app_names(server) == ["mine"]


def test_a_signed_out_or_expired_session_cannot_act(page: Page, console_server: LiveServer) -> None:
    server = console_server
    sign_in(page, server)
    client, csrf = _signed_in_http(page, server)
    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile("/console/sign-in"))
    assert "ob_console" not in cookies(page)
    with client:
        after = client.post("/console/apps", data={"name": "late", "model": "echo", "csrf": csrf})
        chat = client.post(f"/console/apps/{'0' * 32}/chat", json={"prompt": "hi"},
                           headers={"X-CSRF-Token": csrf})
        listing = client.get("/console/apps")
    assert after.status_code == 303 and after.headers["location"].startswith("/console/sign-in")
    assert chat.status_code == 401 and chat.json()["code"] == "SignInRequired"
    assert listing.status_code == 303
    assert _app_names(server) == []

    sign_in(page, server)  # a new session, then its expiry passes
    engine = create_engine(sync_url(server.settings.resolved_database_url))
    with engine.begin() as connection:
        connection.execute(update(ConsoleSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    engine.dispose()
    page.goto(f"{server.url}/console/keys")
    expect(page).to_have_url(re.compile("/console/sign-in"))


def test_a_wrong_credential_is_refused_and_nothing_of_it_is_echoed(page: Page, console_server: LiveServer) -> None:
    page.goto(f"{console_server.url}/console/sign-in")
    page.get_by_test_id("credential").fill("sk-0123456789abcdef0123456789abcdef")
    page.get_by_role("button", name=re.compile("Sign in|登录")).click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid API-key")
    assert "0123456789abcdef" not in page.content()
    assert "ob_console" not in cookies(page)


def test_a_workspace_key_sees_only_its_workspace(page: Page, console_server: LiveServer) -> None:
    server = console_server
    theirs = server.app(workspace="other", name="their-secret-app")
    server.app(workspace="ws1", name="our-app")
    sign_in(page, server, server.key("ws1"))
    expect(page.get_by_test_id("workspace-name")).to_have_text("ws1")
    expect(page.get_by_test_id("apps")).to_contain_text("our-app")
    assert "their-secret-app" not in page.content()
    assert server.key("ws1") not in page.content()  # the key signed in with is never in a page
    # the services' rule, as in the REST API: another workspace's id is as if it did not exist
    response = page.goto(f"{server.url}/console/apps/{theirs}")
    assert response is not None and response.status == 404
    expect(page.get_by_test_id("error")).to_contain_text("AppNotFound")
    assert "their-secret-app" not in page.content()
    response = page.goto(f"{server.url}/console/apps/{theirs}/playground")
    assert response is not None and response.status == 404
    client, csrf = _signed_in_http(page, server)
    with client:
        chat = client.post(f"/console/apps/{theirs}/chat", json={"prompt": "hi"}, headers={"X-CSRF-Token": csrf})
        switch = client.post("/console/workspace", data={"workspace": "other", "csrf": csrf})
        key = client.post("/console/keys", data={"name": "x", "csrf": csrf})
    assert chat.status_code == 404 and chat.json()["code"] == "AppNotFound"
    assert switch.status_code == 403
    assert key.status_code == 403
    page.goto(f"{server.url}/console/apps")
    expect(page.get_by_test_id("workspace-name")).to_have_text("ws1")


def test_a_revoked_key_ends_its_console_sessions(page: Page, console_server: LiveServer) -> None:
    server = console_server
    key = server.key("ws1")
    sign_in(page, server, key)
    key_id = server.http.get(
        "/manage/v1/workspaces/ws1/keys", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()["keys"][0]["key_id"]
    server.http.delete(f"/manage/v1/keys/{key_id}", headers={"Authorization": f"Bearer {ADMIN}"})
    page.goto(f"{server.url}/console/apps")
    expect(page).to_have_url(re.compile("/console/sign-in"))
