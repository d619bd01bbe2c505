"""``openbailian serve --no-workers`` with a separate ``openbailian worker`` process on one
database: the server only queues, the worker ingests, SIGTERM stops the worker cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from openbailian.storage.db import sync_url
from tests.providers.conftest import FakeOpenAI
from tests.support import free_port, serve_in_thread

ADMIN = "ob-admin-worker-test"
TERMINAL = {"FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED", "SAFE_CHECK_FAILED"}


class Process:
    """An ``openbailian`` command in a process of its own, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        command = Path(sys.executable).with_name("openbailian")
        self.popen = subprocess.Popen([str(command), *args], env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(60)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
            self._out.close()


@pytest.fixture
def env(tmp_path: Path, database_url: str | None, request: pytest.FixtureRequest) -> dict[str, str]:
    """The processes' environment; a test module may add to it with a ``WORKER_ENV`` dict."""
    home = tmp_path / "home"
    return {
        **getattr(request.module, "WORKER_ENV", {}),
        **{k: v for k, v in os.environ.items() if not k.startswith("OPENBAILIAN_")},
        "OPENBAILIAN_HOME": str(home),
        "OPENBAILIAN_DATABASE_URL": database_url or f"sqlite:///{home / 'shared.db'}",
        "OPENBAILIAN_ADMIN_TOKEN": ADMIN,
        "OPENBAILIAN_DEFAULT_MODEL": "echo",
        "OPENBAILIAN_WORKER_POLL_SECONDS": "0.2",
    }


def start_api(env: dict[str, str], log: Path, attempts: int = 3) -> tuple[Process, httpx.Client]:
    """``serve --no-workers`` on a free port, answering /healthz. A port only looked up can be
    taken before the server binds it: then the server exits, and another port is tried."""
    for _ in range(attempts):
        started = _try_api(env, log)
        if started is not None:
            return started
    raise AssertionError(f"no free port held in {attempts} tries: " + log.read_text(errors="replace"))


def _try_api(env: dict[str, str], log: Path) -> tuple[Process, httpx.Client] | None:
    port = free_port()
    server = Process(["serve", "--no-workers", "--port", str(port), "--log-level", "warning"], env, log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 120
    while True:
        if server.popen.poll() is not None:
            output = server.output()
            server.stop()
            client.close()
            assert "address already in use" in output, output
            return None
        assert time.monotonic() < deadline, "the server did not start: " + server.output()
        try:
            if client.get("/healthz").status_code == 200:
                return server, client
        except httpx.TransportError:
            time.sleep(0.1)


def sign_in(client: httpx.Client, workspace: str = "ws1") -> None:
    """Give the client a new key of ``workspace``."""
    created = client.post(f"/manage/v1/workspaces/{workspace}/keys", json={"name": "t"},
                          headers={"Authorization": f"Bearer {ADMIN}"})
    assert created.status_code == 201, created.text
    client.headers["Authorization"] = f"Bearer {created.json()['api_key']}"


@pytest.fixture
def api(env: dict[str, str], tmp_path: Path) -> Iterator[httpx.Client]:
    """``serve --no-workers`` on a free port; a client with a key of workspace ws1."""
    server, client = start_api(env, tmp_path / "serve.log")
    try:
        sign_in(client)
        yield client
    finally:
        client.close()
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it (exit status -15).
        assert server.stop() in {0, -signal.SIGTERM}, server.output()


def _poll(fetch: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (view := fetch())["status"] not in TERMINAL:
        assert time.monotonic() < deadline, view
        time.sleep(0.1)
    return view


def _add_session_file(api: httpx.Client, name: str, data: bytes) -> str:
    """Lease, upload (to the server's signed URL: the local store) and AddFile; the file id."""
    grant = api.post("/manage/v1/files/ApplyFileUploadLease", json={
        "CategoryId": "default", "CategoryType": "SESSION_FILE", "FileName": name,
        "Md5": hashlib.md5(data).hexdigest(), "SizeInBytes": len(data),
    }).json()["Data"]
    assert api.put(grant["Param"]["Url"], content=data, headers=grant["Param"]["Headers"]).status_code == 200
    added = api.post("/manage/v1/files/AddFile", json={
        "LeaseId": grant["FileUploadLeaseId"], "CategoryId": "default", "CategoryType": "SESSION_FILE",
    })
    assert added.status_code == 200, added.text
    return str(added.json()["Data"]["FileId"])


def test_the_worker_does_the_work_the_server_queued_and_stops_on_sigterm(api, env, tmp_path: Path) -> None:
    # Queued through the server, which runs no background work.
    base = api.post("/manage/v1/knowledge/bases", json={"name": "handbook"}).json()["index_id"]
    text = "# 年假制度\n每位员工每年享有15天带薪年假，入职满五年后增加到20天。".encode()
    added = api.post(f"/manage/v1/knowledge/bases/{base}/files", files=[("files", ("hr.md", text))])
    assert added.status_code == 201, added.text
    document = added.json()["files"][0]
    assert document["status"] == "INIT"

    file_id = _add_session_file(api, "launch.txt", "The launch of Vivid 7 is on Friday.".encode())

    worker = Process(["worker", "--log-level", "info"], env, tmp_path / "worker.log")
    try:
        view = _poll(lambda: api.get(f"/manage/v1/knowledge/files/{document['file_id']}").json())
        assert view["status"] == "FILE_IS_READY", view
        described = _poll(lambda: {"status": api.post("/manage/v1/files/DescribeFile",
                                                      json={"FileId": file_id}).json()["Data"]["Status"]})
        assert described["status"] == "FILE_IS_READY"
        # Work queued while the worker runs (it did the above) is found by its polling of the database.
        later = api.post(f"/manage/v1/knowledge/bases/{base}/files",
                         files=[("files", ("later.md", "# 加班\n加班需提前一天申请。".encode()))]).json()["files"][0]
        later_file = _add_session_file(api, "later.txt", b"The second launch is on Monday.")
        assert _poll(lambda: api.get(f"/manage/v1/knowledge/files/{later['file_id']}").json())["status"] == "FILE_IS_READY"
        assert _poll(lambda: {"status": api.post("/manage/v1/files/DescribeFile",
                                                 json={"FileId": later_file}).json()["Data"]["Status"]}) == {
            "status": "FILE_IS_READY"}
    finally:
        code = worker.stop()
    log = worker.output()
    assert code == 0, log
    # The worker, not the server, ingested both (the session file's hidden document too).
    assert f"knowledge document {document['file_id']}: FILE_IS_READY" in log
    assert f"knowledge document {later['file_id']}: FILE_IS_READY" in log
    assert log.count(": FILE_IS_READY") == 4
    assert "worker stopping" in log and "worker stopped" in log and "Traceback" not in log

    chunks = api.post("/manage/v1/knowledge/retrieve", json={"query": "年假有几天", "index_ids": [base]}).json()
    assert "15天带薪年假" in chunks["chunks"][0]["text"]


@pytest.fixture
def extractor() -> Iterator[FakeOpenAI]:
    """An OpenAI-compatible model server that answers every extraction with one fact."""
    fake = FakeOpenAI()
    with serve_in_thread(fake.app) as url:
        fake.url = f"{url}/v1"
        yield fake


def _queued_extractions(database_url: str) -> list[tuple[str, int]]:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text("SELECT status, attempts FROM memory_extractions"))]
    finally:
        engine.dispose()


def test_memory_extraction_survives_the_death_of_the_process_that_answered(
    env: dict[str, str], tmp_path: Path, extractor: FakeOpenAI
) -> None:
    fact = '{"facts": [{"subject": "居住城市", "fact": "用户住在杭州"}]}'
    extractor.add(events=[{"choices": [{"index": 0, "delta": {"content": fact}}]},
                          {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}])
    env = {**env, "OPENBAILIAN_MEMORY_MODEL": "extractor",
           "OPENBAILIAN_MODELS": json.dumps({"extractor": {"provider": "openai", "base_url": extractor.url,
                                                           "model": "extractor", "max_retries": 0}})}
    server, client = start_api(env, tmp_path / "serve.log")
    try:
        sign_in(client)
        app_id = client.post("/manage/v1/apps", json={"name": "m", "model": "echo", "memory_enabled": True}).json()["app_id"]
        memory_id = client.post("/manage/v1/memories", json={"description": "张三"}).json()["memory_id"]
        answered = client.post(f"/api/v1/apps/{app_id}/completion",
                               json={"input": {"prompt": "我住在杭州", "memory_id": memory_id}})
        assert answered.status_code == 200, answered.text
        # The answering process runs no background work: the extraction waits in the database.
        deadline = time.monotonic() + 30
        while not (queued := _queued_extractions(env["OPENBAILIAN_DATABASE_URL"])):
            assert time.monotonic() < deadline, "the extraction was not queued"
            time.sleep(0.05)
        assert queued == [("pending", 0)] and extractor.requests == []
    finally:
        client.close()
        server.popen.kill()  # kill -9: nothing of the process survives but what it wrote
        server.stop()

    worker = Process(["worker", "--log-level", "info"], env, tmp_path / "worker.log")
    try:
        server, client = start_api(env, tmp_path / "serve-2.log")
        sign_in(client)
        deadline = time.monotonic() + 120
        while not (items := client.get(f"/manage/v1/memories/{memory_id}/nodes").json()["items"]):
            assert worker.popen.poll() is None, worker.output()
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
        assert [item["content"] for item in items] == ["用户住在杭州"]
        assert "我住在杭州" in extractor.requests[0].body["messages"][-1]["content"]
        assert _queued_extractions(env["OPENBAILIAN_DATABASE_URL"]) == []  # done: the job is gone
        client.close()
        assert server.stop() in {0, -signal.SIGTERM}, server.output()
    finally:
        assert worker.stop() == 0, worker.output()
    assert f"memory {memory_id}: added" in worker.output()
