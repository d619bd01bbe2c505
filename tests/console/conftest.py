"""Console tests: Debian's chromium driven by Playwright against a live server.

Skipped (with the reason) when no chromium is installed at ``/usr/bin/chromium``
(``apt-get install chromium``; ``.ci/run`` installs it). Playwright never downloads a browser.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openbailian.config import ModelSpec
from tests.support import LiveServer, make_settings

CHROMIUM = os.environ.get("OPENBAILIAN_TEST_CHROMIUM", "/usr/bin/chromium")
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
# Every run takes the screenshots; `make screenshots` (OPENBAILIAN_UPDATE_SCREENSHOTS=1) writes them
# over docs/console/, other runs into a temporary folder so a test run leaves the work tree clean.
SCREENSHOTS = (
    DOCS_SCREENSHOTS
    if os.environ.get("OPENBAILIAN_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "openbailian-console-screenshots"
)
ADMIN = "ob-admin-test"

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium) to run the console tests",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

# An upper bound for each wait on the page, not a pace: a loaded machine (or CI) is slow.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: while Playwright's sync API runs, the main thread has a
    # running event loop, and later tests calling asyncio.run() would fail.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def console_server(tmp_path: Path, database_url: str | None) -> Iterator[LiveServer]:
    """A live server with the echo model, and a slow echo (for the stop button)."""
    settings = make_settings(
        tmp_path / "home", database_url, models={"slow-echo": ModelSpec(provider="echo", delay=0.4)}
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"


def sign_in(page: Page, server: LiveServer, credential: str = ADMIN) -> None:
    page.goto(f"{server.url}/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    page.get_by_test_id("credential").fill(credential)
    page.get_by_role("button", name=re.compile("Sign in|登录")).click()
    expect(page).to_have_url(re.compile(r"/console/apps"))


def shoot(page: Page, name: str) -> None:
    """A screenshot for docs/console.md (refreshed there by `make screenshots`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def cookies(page: Page) -> dict[str, Any]:
    return {c["name"]: c for c in page.context.cookies()}
