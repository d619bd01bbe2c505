"""A small HTTP tool on loopback that records what it receives."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class ToolServer:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(server: ToolServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _record(self) -> dict[str, Any]:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            record = {
                "method": self.command,
                "path": parts.path,
                "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "json": json.loads(body) if body else None,
            }
            server.requests.append(record)
            return record

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            record = self._record()
            path = record["path"]
            if path.startswith("/redirect"):
                self._reply(302, b"", {"Location": record["query"]["to"]})
            elif path == "/big":
                self._reply(200, b"x" * 2_000_000, {"Content-Type": "text/plain"})
            elif path == "/echo-auth":
                self._reply(200, json.dumps({"you_sent": record["headers"].get("authorization")}).encode())
            elif path == "/fail":
                self._reply(500, b'{"error": "boom"}')
            else:
                self._reply(200, json.dumps({"weather": "晴", "city": record["query"].get("city")}, ensure_ascii=False).encode())

        do_DELETE = do_GET

        def do_POST(self) -> None:  # noqa: N802
            record = self._record()
            self._reply(200, json.dumps({"ok": True, "received": record["json"]}, ensure_ascii=False).encode())

    return Handler


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    state = ToolServer(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
