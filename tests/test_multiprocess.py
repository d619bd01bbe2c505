"""The scaled-out deployment for real: two ``openbailian serve --no-workers`` processes and
``openbailian worker`` processes on one PostgreSQL database and one S3 server (moto's),
each process with a home of its own (no shared filesystem), as in ``deploy/compose.yaml``.

Documents uploaded through one API process are ingested by the worker and retrieved through
the other; a session file uploaded by presigned URL straight to the bucket is answered from;
100 concurrent continuations of one session spread over both API processes run one at a
time and lose or split no turn; a key's rate limit holds across both; a worker killed with
SIGKILL in the middle of an ingestion is replaced by another that finishes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from openbailian.services.limits import allowance_for
from openbailian.storage.db import sync_url
from tests.cli.test_worker import ADMIN, Process, start_api
from tests.files.s3support import BUCKET, PREFIX, bucket_keys, s3_endpoint  # noqa: F401  (fixture)
from tests.support import POSTGRES_URL, PostgresDatabase, serve_in_thread

pytestmark = [
    pytest.mark.slow,  # minutes: four processes, 100 calls, an ingestion killed and resumed (8 on a busy 2-core box)
    pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL: set OPENBAILIAN_TEST_POSTGRES_URL (.ci/run does)"),
]

RATE_LIMIT = 150  # per key and minute: room for the 101 calls on one session, small enough to exhaust
TERMINAL = {"FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED", "SAFE_CHECK_FAILED"}


class CountingModel:
    """An OpenAI-compatible model server answering ``<user messages seen>:<last user message>``;
    it counts how many of its answers are in progress at once."""

    def __init__(self) -> None:
        self.url = ""
        self.active = 0
        self.most_at_once = 0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])

    async def _complete(self, request: Request) -> Response:
        users = [m for m in (await request.json())["messages"] if m["role"] == "user"]
        answer = f"{len(users)}:{users[-1]['content']}"
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        return StreamingResponse(self._events(answer), media_type="text/event-stream")

    async def _events(self, answer: str) -> AsyncIterator[str]:
        try:
            for piece in (answer[:1], answer[1:]):
                yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}) + "\n\n"
                await asyncio.sleep(0)
            yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + "\n\n"
            yield "data: [DONE]\n\n"
        finally:
            self.active -= 1


class Cluster:
    def __init__(self, env: dict[str, str], root: Path, model: CountingModel) -> None:
        self.env = env
        self.root = root
        self.model = model
        self.apis: list[tuple[Process, httpx.Client]] = []
        self.workers: list[Process] = []

    def process_env(self, name: str) -> dict[str, str]:
        return {**self.env, "OPENBAILIAN_HOME": str(self.root / name)}

    def start_api(self) -> httpx.Client:
        name = f"api-{len(self.apis) + 1}"
        process, client = start_api(self.process_env(name), self.root / f"{name}.log")
        self.apis.append((process, client))
        return client

    def start_worker(self) -> Process:
        name = f"worker-{len(self.workers) + 1}"
        worker = Process(["worker", "--log-level", "info"], self.process_env(name), self.root / f"{name}.log")
        self.workers.append(worker)
        return worker

    def key(self, workspace: str) -> dict[str, str]:
        created = self.apis[0][1].post(f"/manage/v1/workspaces/{workspace}/keys", json={"name": "t"},
                                       headers={"Authorization": f"Bearer {ADMIN}"})
        assert created.status_code == 201, created.text
        return {"Authorization": f"Bearer {created.json()['api_key']}"}

    def sql(self, query: str, **params: Any) -> list[Any]:
        engine = create_engine(sync_url(self.env["OPENBAILIAN_DATABASE_URL"]), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(query), params))
        finally:
            engine.dispose()

    def stop(self) -> None:
        for process, client in self.apis:
            client.close()
            process.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
def cluster(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:  # noqa: F811
    database = PostgresDatabase(POSTGRES_URL or "")
    url = database.create()
    model = CountingModel()
    root = tmp_path_factory.mktemp("cluster")
    with serve_in_thread(model.app) as model_url:
        model.url = f"{model_url}/v1"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPENBAILIAN_")},
            "OPENBAILIAN_DATABASE_URL": url,
            "OPENBAILIAN_ADMIN_TOKEN": ADMIN,
            "OPENBAILIAN_SECRET_KEY": "multiprocess-secret-key",
            "OPENBAILIAN_FILES_SIGNING_SECRET": "multiprocess-signing-secret",
            "OPENBAILIAN_DEFAULT_MODEL": "echo",
            "OPENBAILIAN_MODELS": json.dumps({"counter": {"provider": "openai", "base_url": model.url,
                                                          "model": "counter", "max_retries": 0}}),
            "OPENBAILIAN_MAX_HISTORY_TURNS": "500",
            "OPENBAILIAN_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            "OPENBAILIAN_AUTH_FAILURES_PER_MINUTE": "100000",
            "OPENBAILIAN_WORKER_POLL_SECONDS": "0.2",
            "OPENBAILIAN_WORKER_LEASE_SECONDS": "4",
            "OPENBAILIAN_S3_BUCKET": BUCKET, "OPENBAILIAN_S3_PREFIX": PREFIX,
            "OPENBAILIAN_S3_ENDPOINT_URL": s3_endpoint, "OPENBAILIAN_S3_REGION": "us-east-1",
            "OPENBAILIAN_S3_ACCESS_KEY_ID": "testing", "OPENBAILIAN_S3_SECRET_ACCESS_KEY": "testing",
            "OPENBAILIAN_S3_ADDRESSING_STYLE": "path",
        }
        live = Cluster(env, root, model)
        try:
            live.start_api()
            live.start_api()
            live.start_worker()
            yield live
        finally:
            live.stop()
    database.drop()


def poll(fetch: Any, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (view := fetch())["status"] not in TERMINAL:
        assert time.monotonic() < deadline, view
        time.sleep(0.1)
    return view


def test_a_document_uploaded_through_one_api_process_is_ingested_by_the_worker_and_found_through_the_other(
    cluster: Cluster, s3_endpoint: str  # noqa: F811
) -> None:
    auth = cluster.key("ws-docs")
    (_, api_1), (_, api_2) = cluster.apis
    base = api_1.post("/manage/v1/knowledge/bases", json={"name": "handbook"}, headers=auth).json()["index_id"]
    handbook = "# 年假制度\n每位员工每年享有15天带薪年假，入职满五年后增加到20天。".encode()
    added = api_1.post(f"/manage/v1/knowledge/bases/{base}/files", files=[("files", ("hr.md", handbook))], headers=auth)
    assert added.status_code == 201, added.text
    document = added.json()["files"][0]["file_id"]
    assert any(key.startswith(f"{PREFIX}/knowledge/files/{base}/") for key in bucket_keys(s3_endpoint))

    view = poll(lambda: api_2.get(f"/manage/v1/knowledge/files/{document}", headers=auth).json())
    assert view["status"] == "FILE_IS_READY", view
    found = api_2.post("/manage/v1/knowledge/retrieve", json={"query": "年假有几天", "index_ids": [base]}, headers=auth)
    assert found.status_code == 200, found.text
    assert "15天带薪年假" in found.json()["chunks"][0]["text"]
    assert f"knowledge document {document}: FILE_IS_READY" in cluster.workers[0].output()


def test_a_session_file_uploaded_by_presigned_url_is_answered_from(cluster: Cluster, s3_endpoint: str) -> None:  # noqa: F811
    auth = cluster.key("ws-files")
    (_, api_1), (_, api_2) = cluster.apis
    data = "通义 Vivid 7 的售价是2999元，周五发布。".encode()
    granted = api_1.post("/manage/v1/files/ApplyFileUploadLease", headers=auth, json={
        "CategoryId": "default", "CategoryType": "SESSION_FILE", "FileName": "launch.txt",
        "Md5": hashlib.md5(data).hexdigest(), "SizeInBytes": len(data),
    })
    assert granted.status_code == 200, granted.text
    grant = granted.json()["Data"]
    url = grant["Param"]["Url"]
    assert url.startswith(f"{s3_endpoint}/{BUCKET}/") and "X-Amz-Signature=" in url  # straight to the bucket
    assert httpx.put(url, content=data, headers=grant["Param"]["Headers"]).status_code == 200
    added = api_2.post("/manage/v1/files/AddFile", headers=auth, json={
        "LeaseId": grant["FileUploadLeaseId"], "CategoryId": "default", "CategoryType": "SESSION_FILE",
    })
    assert added.status_code == 200, added.text
    file_id = added.json()["Data"]["FileId"]
    described = poll(lambda: {"status": api_1.post("/manage/v1/files/DescribeFile", headers=auth,
                                                   json={"FileId": file_id}).json()["Data"]["Status"]})
    assert described["status"] == "FILE_IS_READY"

    app_id = api_1.post("/manage/v1/apps", json={"name": "files", "model": "echo", "file_parsing": True},
                        headers=auth).json()["app_id"]
    answered = api_2.post(f"/api/v1/apps/{app_id}/completion", headers=auth, json={
        "input": {"prompt": "Vivid 7 多少钱？"}, "parameters": {"rag_options": {"session_file_ids": [file_id]}},
    })
    assert answered.status_code == 200, answered.text
    system = json.loads(answered.json()["output"]["text"])["messages"][0]["content"]
    assert "2999元" in system


def test_100_concurrent_continuations_over_both_api_processes_run_one_at_a_time_and_keep_every_turn(
    cluster: Cluster,
) -> None:
    auth = cluster.key("ws-session")
    (_, api_1), (_, api_2) = cluster.apis
    app_id = api_1.post("/manage/v1/apps", json={"name": "chat", "model": "counter"}, headers=auth).json()["app_id"]
    first = api_1.post(f"/api/v1/apps/{app_id}/completion", json={"input": {"prompt": "turn start"}}, headers=auth)
    assert first.status_code == 200, first.text
    session_id = first.json()["output"]["session_id"]
    cluster.model.most_at_once = 0

    async def continue_on(client: httpx.AsyncClient, n: int) -> tuple[int, str]:
        response = await client.post(f"/api/v1/apps/{app_id}/completion", headers=auth,
                                     json={"input": {"prompt": f"turn {n}", "session_id": session_id}})
        return response.status_code, response.text

    async def all_at_once() -> list[tuple[int, str]]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=str(api_1.base_url), timeout=300, limits=limits) as one, \
                httpx.AsyncClient(base_url=str(api_2.base_url), timeout=300, limits=limits) as two:
            return await asyncio.gather(*(continue_on(one if n % 2 else two, n) for n in range(100)))

    results = asyncio.run(all_at_once())
    assert [status for status, _ in results] == [200] * 100, [body for status, body in results if status != 200][:3]
    assert cluster.model.most_at_once == 1  # the model never answered two turns of the session at once

    rows = cluster.sql("SELECT seq, role, content FROM session_messages WHERE session_id = :s ORDER BY seq",
                       s=session_id)
    assert [seq for seq, _, _ in rows] == list(range(202))
    assert [role for _, role, _ in rows] == ["user", "assistant"] * 101
    users = [content for _, _, content in rows[0::2]]
    assert sorted(users[1:]) == sorted(f"turn {n}" for n in range(100))
    # Each run saw every earlier turn: the k-th answer counted k user messages, its own last.
    answers = [content for _, _, content in rows[1::2]]
    assert answers == [f"{k + 1}:{user}" for k, user in enumerate(users)]


def test_a_keys_rate_limit_holds_across_both_api_processes(cluster: Cluster) -> None:
    auth = cluster.key("ws-rate")
    (_, api_1), (_, api_2) = cluster.apis
    app_id = api_1.post("/manage/v1/apps", json={"name": "rate", "model": "echo"}, headers=auth).json()["app_id"]

    async def burst() -> tuple[dict[int, list[int]], float]:
        """Batches of 40 concurrent calls, half to each process, until both have refused some."""
        statuses: dict[int, list[int]] = {1: [], 2: []}
        started = time.monotonic()
        # No keep-alive: a pooled connection the server closes between batches would reset.
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=str(api_1.base_url), timeout=120, limits=fresh) as one, \
                httpx.AsyncClient(base_url=str(api_2.base_url), timeout=120, limits=fresh) as two:
            while 429 not in statuses[1] or 429 not in statuses[2]:
                assert len(statuses[1]) < 4 * RATE_LIMIT, "never limited"
                calls = [(n % 2 + 1, (one, two)[n % 2].post(f"/api/v1/apps/{app_id}/completion", headers=auth,
                                                             json={"input": {"prompt": "x"}})) for n in range(40)]
                answers = await asyncio.gather(*(call for _, call in calls))
                for (process, _), answer in zip(calls, answers):
                    assert answer.status_code in {200, 429}, answer.text
                    statuses[process].append(answer.status_code)
        return statuses, time.monotonic() - started

    statuses, elapsed = asyncio.run(burst())
    answered = (statuses[1] + statuses[2]).count(200)
    # One budget for both processes (each with its own would have allowed twice as many), plus
    # what the bucket refilled while the calls ran, less what each process may still hold of the
    # last allowance it took (services/limits.py: up to allowance - 1 tokens unspent).
    unspent = 2 * (allowance_for(RATE_LIMIT) - 1)
    assert RATE_LIMIT - unspent <= answered <= RATE_LIMIT + int(elapsed * RATE_LIMIT / 60) + 1, (answered, elapsed)
    assert 429 in statuses[1] and 429 in statuses[2]  # refused by both processes


def test_a_worker_killed_mid_ingestion_is_replaced_by_another_that_finishes_it(cluster: Cluster) -> None:
    auth = cluster.key("ws-kill")
    (_, api_1), (_, api_2) = cluster.apis
    base = api_1.post("/manage/v1/knowledge/bases", json={"name": "big"}, headers=auth).json()["index_id"]
    lines = [f"第{n}条规定：员工编号{n}的年假为{n % 20 + 5}天，加班需提前{n % 3 + 1}天申请。" for n in range(1000)]
    big = ("# 员工手册\n" + "\n\n".join(lines)).encode()
    document = api_1.post(f"/manage/v1/knowledge/bases/{base}/files", files=[("files", ("big.md", big))],
                          headers=auth).json()["files"][0]["file_id"]

    def status() -> str:
        return str(api_2.get(f"/manage/v1/knowledge/files/{document}", headers=auth).json()["status"])

    deadline = time.monotonic() + 120
    while (seen := status()) == "INIT":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen not in TERMINAL, f"ingested before it could be interrupted ({seen}): make the document bigger"
    first = cluster.workers[0]
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(30)
    assert f"knowledge document {document}: FILE_IS_READY" not in first.output()

    second = cluster.start_worker()
    view = poll(lambda: api_2.get(f"/manage/v1/knowledge/files/{document}", headers=auth).json(), timeout=600)
    assert view["status"] == "FILE_IS_READY", view
    assert f"knowledge document {document}: FILE_IS_READY" in second.output()
    (claims,) = cluster.sql("SELECT attempts FROM knowledge_documents WHERE id = :d", d=document)
    assert claims[0] == 2  # claimed by the killed worker, then once by its replacement
    found = api_1.post("/manage/v1/knowledge/retrieve", headers=auth,
                       json={"query": "员工编号999的年假", "index_ids": [base], "top_k": 3}).json()
    assert any("员工编号999" in chunk["text"] for chunk in found["chunks"])
