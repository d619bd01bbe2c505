"""A live server and the official ``alibabacloud-bailian20231229`` SDK (unmodified) pointed
at it, signed with an AccessKey pair and with a bearer token.

For every family's tests:

- ``openapi``: an :class:`OpenApi` with ``server`` (``tests.support.LiveServer``),
  ``workspace``, ``credentials`` (``api_key``, ``access_key_id``, ``access_key_secret``,
  ``key_id``), ``signed`` and ``bearer`` SDK clients, and ``client(...)`` for more.
- ``sdk``: one SDK client, parametrized over both credential forms (a test using it
  runs twice).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from alibabacloud_bailian20231229.client import Client
from alibabacloud_tea_openapi.utils_models import Config
from darabonba.runtime import RuntimeOptions

from tests.support import LiveServer

WORKSPACE = "ws-openapi"


def sdk_client(server: LiveServer, **credentials: Any) -> Client:
    """An SDK client for ``server``: ``access_key_id=…, access_key_secret=…`` or ``bearer_token=…``."""
    return Client(Config(endpoint=f"127.0.0.1:{server.port}", protocol="http", **credentials))


def runtime() -> RuntimeOptions:
    """Runtime options for the SDK's ``*_with_options(…, headers, runtime)`` calls."""
    return RuntimeOptions()


def create_key(server: LiveServer, workspace: str) -> dict[str, str]:
    """A new key of ``workspace`` from the management API: api_key + AccessKey pair."""
    response = server.http.post(
        f"/manage/v1/workspaces/{workspace}/keys",
        json={"name": "openapi-test"},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


@dataclass
class OpenApi:
    server: LiveServer
    workspace: str
    credentials: dict[str, str]
    signed: Client = field(init=False)
    bearer: Client = field(init=False)

    def __post_init__(self) -> None:
        self.signed = self.client()
        self.bearer = self.client(bearer=True)

    def client(self, *, bearer: bool = False, credentials: dict[str, str] | None = None) -> Client:
        credentials = credentials or self.credentials
        if bearer:
            return sdk_client(self.server, bearer_token=credentials["api_key"])
        return sdk_client(
            self.server,
            access_key_id=credentials["access_key_id"],
            access_key_secret=credentials["access_key_secret"],
        )


@pytest.fixture
def openapi(server: LiveServer) -> Iterator[OpenApi]:
    yield OpenApi(server, WORKSPACE, create_key(server, WORKSPACE))


@pytest.fixture(params=["signed", "bearer"])
def sdk(openapi: OpenApi, request: pytest.FixtureRequest) -> Client:
    return openapi.signed if request.param == "signed" else openapi.bearer
