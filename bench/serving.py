"""A real ``openbailian serve`` process for benchmarks: started on a free port with the given
environment, ready once ``/healthz`` answers, with an API key of one workspace; stopped after."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import free_port

__all__ = ["command", "serving", "stop"]


def command(*args: str) -> list[str]:
    """The ``openbailian`` CLI of this interpreter's environment."""
    return [str(Path(sys.executable).with_name("openbailian")), *args]


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving(
    env: dict[str, str], home: Path, *, admin: str, workspace: str, timeout: float = 300
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """``serve`` without background work; the client carries a new API key of ``workspace``."""
    port = free_port()
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command("serve", "--workers", "1", "--no-workers", "--port", str(port), "--log-level", "warning"),
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as client:
                _wait_ready(server, client, log_path, time.monotonic() + 300)
                key = client.post(f"/manage/v1/workspaces/{workspace}/keys", json={"name": "bench"},
                                  headers={"Authorization": f"Bearer {admin}"})
                key.raise_for_status()
                client.headers["Authorization"] = f"Bearer {key.json()['api_key']}"
                yield server, client
        finally:
            stop(server)


def _wait_ready(server: subprocess.Popen[bytes], client: httpx.Client, log: Path, deadline: float) -> None:
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("serve did not start: " + log.read_text(errors="replace"))
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)  # polling a starting process, not synchronising a test
