"""API keys and AccessKeys in the console: created once per form post (a reload neither makes
a second key nor shows the secret again), shown once, listed, revoked; an AccessKey made on
its own signs OpenAPI calls with the official alibabacloud-bailian20231229 SDK until revoked."""

from __future__ import annotations

import re

import pytest
from alibabacloud_bailian20231229 import models
from playwright.sync_api import Page, expect
from Tea.exceptions import TeaException

from tests.api.openapi.conftest import sdk_client
from tests.console.conftest import shoot, sign_in
from tests.support import LiveServer


def _listed_keys(server: LiveServer, workspace: str = "default") -> list[dict]:
    response = server.http.get(
        f"/manage/v1/workspaces/{workspace}/keys", headers={"Authorization": f"Bearer {server.admin_token}"}
    )
    return response.json()["keys"]


def test_reloading_after_creating_a_key_makes_no_second_key_and_hides_the_secret(
    page: Page, console_server: LiveServer
) -> None:
    server = console_server
    sign_in(page, server)
    page.goto(f"{server.url}/console/keys")
    page.get_by_test_id("new-key-name").fill("once")
    page.get_by_test_id("create-key").click()
    key = page.get_by_test_id("new-key").inner_text()
    assert re.fullmatch(r"sk-[0-9a-f]{32}", key)
    expect(page).to_have_url(f"{server.url}/console/keys")  # answered by a redirect: a GET to reload
    page.reload()
    expect(page.get_by_test_id("keys").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert key not in page.content()
    assert [k["name"] for k in _listed_keys(server)] == ["once"]
    page.go_back()  # nor does going back to the page
    page.reload()
    assert key not in page.content()
    assert len(_listed_keys(server)) == 1
    # and the key shown once works
    assert server.http.get("/manage/v1/apps", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_an_access_key_is_created_shown_once_signs_sdk_calls_and_is_revoked(
    page: Page, console_server: LiveServer
) -> None:
    server = console_server
    sign_in(page, server)
    page.get_by_role("link", name="AccessKeys").click()
    expect(page.get_by_text("No AccessKeys yet.")).to_be_visible()
    page.get_by_test_id("new-access-key-name").fill("签名调用")
    page.get_by_test_id("create-access-key").click()
    access_key_id = page.get_by_test_id("new-access-key-id").inner_text()
    secret = page.get_by_test_id("new-access-key-secret").inner_text()
    assert re.fullmatch(r"OBAK\w{20}", access_key_id) and len(secret) == 30
    row = page.locator(f"[data-access-key-id='{access_key_id}']")
    expect(row).to_contain_text("签名调用")
    expect(row).to_contain_text("None")  # no API key with it
    shoot(page, "access-keys")
    page.reload()
    expect(page.get_by_test_id("new-access-key-secret")).to_have_count(0)
    assert secret not in page.content()
    expect(page.get_by_test_id("access-keys").locator("tbody tr")).to_have_count(1)

    client = sdk_client(server, access_key_id=access_key_id, access_key_secret=secret)
    listed = client.list_memories("default", models.ListMemoriesRequest())
    assert listed.status_code == 200
    page.goto(f"{server.url}/console/keys")  # an AccessKey alone is not an API key
    expect(page.get_by_test_id("keys")).to_have_count(0)

    page.goto(f"{server.url}/console/access-keys")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_test_id("revoke").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    expect(row).to_contain_text("Revoked")
    with pytest.raises(TeaException) as refused:
        client.list_memories("default", models.ListMemoriesRequest())
    assert refused.value.code == "InvalidApiKey"


def test_a_workspace_key_lists_access_keys_but_cannot_create_or_revoke(
    page: Page, console_server: LiveServer
) -> None:
    server = console_server
    key = server.key("ws1")
    sign_in(page, server, key)
    page.goto(f"{server.url}/console/access-keys")
    expect(page.get_by_test_id("access-keys").locator("tbody tr")).to_have_count(1)  # the pair of its key
    expect(page.get_by_test_id("create-access-key")).to_have_count(0)
    expect(page.get_by_test_id("revoke")).to_have_count(0)
    csrf = page.locator("body").get_attribute("data-csrf")
    refused = page.request.post(f"{server.url}/console/access-keys", form={"name": "x", "csrf": csrf or ""})
    assert refused.status == 403
    other = _listed_keys(server, "ws1")[0]["key_id"]
    revoke = page.request.post(f"{server.url}/console/access-keys/{other}/revoke", form={"csrf": csrf or ""})
    assert revoke.status == 403
    assert len(_listed_keys(server, "ws1")) == 1
    assert not _listed_keys(server, "ws1")[0]["revoked"]


def test_revoking_another_workspace_s_key_is_refused_like_a_missing_one(
    page: Page, console_server: LiveServer
) -> None:
    server = console_server
    server.key("ws2")
    foreign = _listed_keys(server, "ws2")[0]["key_id"]
    sign_in(page, server)
    page.get_by_test_id("workspace").fill("ws1")  # the administrator, viewing ws1
    page.get_by_test_id("switch-workspace").click()
    page.goto(f"{server.url}/console/access-keys")
    expect(page.locator("h1")).to_contain_text("ws1")
    csrf = page.locator("body").get_attribute("data-csrf") or ""
    foreign_answer = page.request.post(f"{server.url}/console/access-keys/{foreign}/revoke", form={"csrf": csrf})
    missing_answer = page.request.post(f"{server.url}/console/access-keys/{'0' * 32}/revoke", form={"csrf": csrf})
    assert foreign_answer.status == missing_answer.status == 404
    assert not _listed_keys(server, "ws2")[0]["revoked"]
