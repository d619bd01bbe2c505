"""Test support: settings in a temporary home, a live server on a free port, throwaway databases.

Set ``OPENBAILIAN_TEST_POSTGRES_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``)
to run every server-backed test against PostgreSQL: each test then gets a
database of its own, created and dropped around it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from openbailian.api.app import create_app
from openbailian.api.wire import HTTP_PROTOCOL
from openbailian.config import Settings
from openbailian.runtime import Runtime

POSTGRES_URL = os.environ.get("OPENBAILIAN_TEST_POSTGRES_URL")

# The SDK's read timeout (seconds) for one call to the bundled local model: on a busy two-core
# machine one answer, queued behind others and a memory extraction, can pass the SDK's 300 s.
LOCAL_MODEL_BUDGET = 1200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_socket() -> socket.socket:
    """A socket bound to a free loopback port, to hand to uvicorn (``Server.run(sockets=...)``): a
    port only looked up (:func:`free_port`) can be taken by any connection's ephemeral port before
    the server binds it (a CI run failed so)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app (a scripted remote service) on a free loopback port; yields its base URL."""
    sock = loopback_socket()
    config = uvicorn.Config(app, http="h11", lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the scripted server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class PostgresDatabase:
    """A throwaway database on the test PostgreSQL server."""

    def __init__(self, server_url: str) -> None:
        from sqlalchemy.engine import make_url

        self._server = make_url(server_url)
        self.name = f"ob_test_{uuid.uuid4().hex[:12]}"
        self.url = self._server.set(database=self.name).render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        import psycopg

        url = self._server.set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(sql)

    def create(self) -> str:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self.url

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def make_settings(home: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "default_model": "echo",
        "admin_token": "ob-admin-test",
        "rate_limit_per_minute": 100_000,
        "auth_failures_per_minute": 100_000,  # tests/api/test_auth_failures.py tests the limit
    }
    values.update(overrides)
    return Settings(**values)


class LiveServer:
    """uvicorn serving ``create_app(settings)`` in a thread, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime.build(settings)
        self.admin_token = settings.admin_token or ""
        self._socket = loopback_socket()
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_http_api_url = f"{self.url}/api/v1/"
        config = uvicorn.Config(
            create_app(settings, runtime=self.runtime),
            log_level="warning",
            lifespan="on",
            http=HTTP_PROTOCOL,  # as `openbailian serve`
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._keys: dict[str, str] = {}
        self.http = httpx.Client(base_url=self.url, timeout=60.0)

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (for a test that must occupy it the way a workload would)."""
        return self._server.servers[0].get_loop()

    def stop(self) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(timeout=30)  # the app's lifespan closes the runtime
        self._socket.close()

    def key(self, workspace: str = "ws1") -> str:
        """An API key of ``workspace`` (created once per workspace)."""
        if workspace not in self._keys:
            response = self.http.post(
                f"/manage/v1/workspaces/{workspace}/keys",
                json={"name": "test"},
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
            response.raise_for_status()
            self._keys[workspace] = response.json()["api_key"]
        return self._keys[workspace]

    def app(self, workspace: str = "ws1", name: str = "test", model: str = "echo", **config: Any) -> str:
        """Create and publish an app; returns its id."""
        response = self.http.post(
            "/manage/v1/apps",
            json={"name": name, "model": model, **config},
            headers=self.auth(workspace),
        )
        assert response.status_code == 201, response.text
        return response.json()["app_id"]

    def auth(self, workspace: str = "ws1") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(workspace)}"}

    def call(self, app_id: str, body: dict[str, Any], workspace: str = "ws1", **kwargs: Any) -> httpx.Response:
        """POST a completion as raw HTTP (JSON, not streamed)."""
        return self.http.post(
            f"/api/v1/apps/{app_id}/completion", json=body, headers=self.auth(workspace), **kwargs
        )




def wait_until(condition: Any, what: str, timeout: float = 120.0, every: float = 0.02) -> Any:
    """Poll ``condition()`` until it returns something truthy (returned); fail after ``timeout``
    seconds saying ``what`` never happened. A deadline against hanging, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(every)
    return result
