"""A real ``openbailian serve`` process for benchmarks: started on a free port with the given
environment, ready once ``/healthz`` answers (``bench/core.py``'s ``start_server``), with an API key of one workspace; stopped after."""

from __future__ import annotations

import signal
import subprocess
import sys
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
    from bench.core import start_server

    port = free_port()
    argv = command("serve", "--workers", "1", "--no-workers", "--port", str(port), "--log-level", "warning")
    server = start_server("serve", argv, env, port, home / "serve.log", timeout=300)
    try:
        with httpx.Client(base_url=server.url, timeout=timeout) as client:
            key = client.post(f"/manage/v1/workspaces/{workspace}/keys", json={"name": "bench"},
                              headers={"Authorization": f"Bearer {admin}"})
            key.raise_for_status()
            client.headers["Authorization"] = f"Bearer {key.json()['api_key']}"
            yield server.process, client
    finally:
        stop(server.process)
