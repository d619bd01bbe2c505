"""/docs and /redoc work on a machine without internet: every script, style sheet and icon
they load is served by the server itself."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_pages_load_nothing_from_outside(server, page):
    response = server.http.get(page)
    assert response.status_code == 200
    html = response.text
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assets += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)  # the OpenAPI document
    assert assets, html
    external = [url for url in assets if re.match(r"(https?:)?//", url)]
    assert external == [], external
    for url in assets:
        asset = server.http.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url


def test_the_openapi_document_lists_the_completion_call(server):
    paths = server.http.get("/openapi.json").json()["paths"]
    assert "/api/v1/apps/{app_id}/completion" in paths
