"""Core benchmark: the completion endpoint against a bare Starlette endpoint, open SSE
streams, and the ``local`` model through the API against xllamacpp called directly.

Run by hand from the repository root (about 4-6 minutes on 2 cores)::

    .venv/bin/python bench/core.py --profile --wait-quiet 300

(``--parts local`` runs one part; ``--local-threads 1`` compares at another thread count;
``--no-write`` only prints.)

It prints markdown tables and rewrites the "## Core: completion endpoint" section of
docs/benchmarks.md (other sections are left as they are). Everything is bounded in count
and time, runs on 127.0.0.1 only, and stops the servers it started.

1. ``POST /api/v1/apps/{id}/completion`` on the ``echo`` model (JSON, and SSE with
   ``X-DashScope-SSE: enable``) against a bare Starlette app that returns the very same
   bytes without doing anything, at 1, 16 and 128 concurrent clients. Both run as their
   own uvicorn process (one worker, the same uvicorn defaults); overhead = our p50 - bare p50.
2. How many SSE streams the server holds open at once: N streams on an echo model that
   waits 0.5 s between pieces; how many completed with the exact expected text, and RSS.
3. ``local`` model tokens/s through the API (SSE, incremental_output) against xllamacpp
   called directly in this process on the same GGUF with the same parameters, one after
   the other (never at the same time), interleaved round by round.

4. ``openbailian serve --workers N`` on PostgreSQL (``--postgres-url``), N = 1 then 2:
   JSON echo calls from wrk (a prerequisite: ``apt-get install wrk``; the part is skipped
   with that message without it), req/s of two processes against one, and the CPU each
   party took (client, every server process, PostgreSQL, the rest of the machine).
   ``--workers-before CHECKOUT`` runs the same with another checkout's code first (a
   before/after in one run); ``--workers-database sqlite`` on SQLite instead.

After part 1 the steps of one call (app lookup, prepare, storing the turn) are timed
in-process, with and without SQLite writes serialised. ``--profile`` also samples the
server with py-spy (``pip install py-spy``) under JSON and SSE load.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Core: completion endpoint"
ANALYSIS = "### Analysis"  # hand-written, kept when the bench rewrites the section
PLACEHOLDERS = [
    ("## Knowledge bases", "knowledge"),
    ("## Session files", "files"),
    ("## Memory and tools", "memory_tools"),
]
FINISH_STOP = b'"finish_reason":"stop"'
ECHO_PROMPT = "你好，请介绍一下你自己。Hello, who are you?"
LOCAL_PROMPT = "用 Python 写一个快速排序函数，附带详细注释和使用示例。"
LOCAL_PARAMS = {"max_tokens": 128, "seed": 1234, "temperature": 0.7, "top_p": 0.8, "top_k": 20}
SLOW_DELAY = 0.5
OVERHEAD_TARGET_MS = 1.0  # issue 15
RPS_TARGET = 0.5  # ours/bare req/s at 1 and 16 clients (issue 15)
LOCAL_STREAMS = (1, 2, 4)  # concurrent calls on the local model (it has 4 slots)
PARTS = ("overhead", "streams", "local", "workers")
WORKERS_TARGET = 1.7  # serve --workers 2 against one worker, req/s (issue 15)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class CpuMeter:
    """How much of the machine other processes used between two snapshots (a noise gauge)."""

    def __init__(self) -> None:
        self.pids: list[int] = [os.getpid()]

    def snapshot(self) -> tuple[int, int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        ours = 0
        for pid in self.pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ours += int(stat[11]) + int(stat[12])
            except (OSError, IndexError):
                pass
        return sum(fields), sum(fields) - idle, ours

    @staticmethod
    def others(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
        """Share of all cores busy with processes that are not ours."""
        total, busy, ours = (a - b for a, b in zip(after, before))
        return max(0.0, (busy - ours) / total) if total else 0.0


def start_server(
    name: str, argv: list[str], env: dict[str, str], port: int, log: Path, *, timeout: float = 60
) -> Server:
    out = log.open("wb")
    process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(name, process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} did not start in {timeout:g} s; see {log}")


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "openbailian"
    done = subprocess.run([str(exe), *args, "--json"], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openbailian {' '.join(args)} failed: {done.stderr}")
    return json.loads(done.stdout)


# ---------------------------------------------------------------- the bare endpoint


def serve_bare(port: int, bodies: Path) -> None:
    """A Starlette app that answers with pre-recorded bytes and does nothing else."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    recorded = json.loads(bodies.read_text())
    json_body = recorded["json"].encode()
    blocks = [b.encode() for b in recorded["sse_blocks"]]

    async def completion(request: Request) -> Response:
        await request.body()
        if request.headers.get("x-dashscope-sse", "").lower() == "enable":

            async def stream():  # type: ignore[no-untyped-def]
                for block in blocks:
                    yield block

            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
        return Response(json_body, media_type="application/json")

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[
        Route("/api/v1/apps/{app_id}/completion", completion, methods=["POST"]),
        Route("/healthz", healthz),
    ])
    # The same uvicorn call (and defaults) as `openbailian serve`.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


def record_bodies(server: Server, app_id: str, key: str, path: Path) -> None:
    """One JSON and one SSE answer of our server, for the bare app to replay."""
    payload = echo_payload(sse=False)
    json_body = httpx.post(completion_url(server, app_id), json=payload, headers=auth(key), timeout=10).text
    sse = httpx.post(
        completion_url(server, app_id), json=echo_payload(sse=True), headers=auth(key, sse=True), timeout=10
    ).text
    blocks = [block + "\n\n" for block in sse.split("\n\n") if block.strip()]
    path.write_text(json.dumps({"json": json_body, "sse_blocks": blocks}, ensure_ascii=False))


# ---------------------------------------------------------------- part 1: request load


def auth(key: str, *, sse: bool = False) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if sse:
        headers["X-DashScope-SSE"] = "enable"
    return headers


def completion_url(server: Server, app_id: str) -> str:
    return f"{server.url}/api/v1/apps/{app_id}/completion"


def echo_payload(*, sse: bool) -> dict[str, Any]:
    return {"input": {"prompt": ECHO_PROMPT}, "parameters": {"incremental_output": True} if sse else {}}


@dataclass
class Level:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _one(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], sse: bool) -> bool:
    if sse:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            data = b"".join([chunk async for chunk in response.aiter_raw()])
            return response.status_code == 200 and FINISH_STOP in data[-800:]
    response = await client.post(url, content=body, headers=headers)
    return response.status_code == 200 and FINISH_STOP in response.content


_SSL = ssl.create_default_context()  # built once: every client would otherwise build its own


def new_client(**options: Any) -> httpx.AsyncClient:
    """One simulated client: its own connection, so no pool is shared between clients."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), verify=_SSL, **options
    )


async def drive(
    url: str, headers: dict[str, str], payload: dict[str, Any], *, sse: bool, clients: int, total: int,
    time_limit: float, warmup: int = 0,
) -> Level:
    """``total`` requests from ``clients`` concurrent clients (stops early at ``time_limit``).

    Each client has its own ``httpx.AsyncClient``: one shared pool of 128 connections
    costs httpcore time that grows with the pool size and would throttle the client.
    """
    body = json.dumps(payload, ensure_ascii=False).encode()
    result = Level()
    pool = [new_client(timeout=60) for _ in range(clients)]
    try:
        for _ in range(-(-warmup // clients)):
            await asyncio.gather(*(_one(c, url, body, headers, sse) for c in pool))
        remaining = total
        start = time.perf_counter()
        deadline = start + time_limit

        async def loop(client: httpx.AsyncClient) -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                began = time.perf_counter()
                try:
                    ok = await _one(client, url, body, headers, sse)
                except httpx.HTTPError:
                    ok = False
                result.requests += 1
                if ok:
                    result.latencies_ms.append((time.perf_counter() - began) * 1000)
                else:
                    result.errors += 1

        await asyncio.gather(*(loop(c) for c in pool))
        result.seconds = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return result


def run_overhead(ours: Server, bare: Server, app_id: str, key: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for sse in (False, True):
        for clients in (1, 16, 128):
            total = args.requests_1 if clients == 1 else args.requests_n
            levels = {}
            for server in (bare, ours):  # same order every time; bare first warms nothing of ours
                levels[server.name] = asyncio.run(drive(
                    completion_url(server, app_id), auth(key, sse=sse), echo_payload(sse=sse), sse=sse,
                    clients=clients, total=total, time_limit=args.level_seconds, warmup=min(total, 2 * clients + 20),
                ))
            row = {"mode": "SSE" if sse else "JSON", "clients": clients, "bare": levels["bare"], "ours": levels["ours"]}
            rows.append(row)
            print(f"  {row['mode']:4} c={clients:<3}  bare {levels['bare'].rps:7.0f} req/s p50 {levels['bare'].pct(.5):6.2f} ms"
                  f"   ours {levels['ours'].rps:7.0f} req/s p50 {levels['ours'].pct(.5):6.2f} ms"
                  f"  errors {levels['bare'].errors}/{levels['ours'].errors}", flush=True)
    return rows


# ---------------------------------------------------------------- part 2: open streams


@dataclass
class StreamsResult:
    streams: int
    correct: int = 0
    peak_open: int = 0
    seconds: float = 0.0
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0


def _events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in raw.decode().splitlines() if line.startswith("data:")]


async def hold_streams(server: Server, app_id: str, key: str, n: int, time_limit: float) -> StreamsResult:
    url, headers = completion_url(server, app_id), auth(key, sse=True)
    body = json.dumps(echo_payload(sse=True), ensure_ascii=False).encode()
    result = StreamsResult(streams=n, rss_before_mb=server.rss_mb())
    spans: list[tuple[float, float]] = []
    timeout = httpx.Timeout(time_limit, connect=time_limit, pool=time_limit)

    async def one() -> None:
        try:
            async with new_client(timeout=timeout) as client, client.stream("POST", url, content=body, headers=headers) as response:
                opened = time.perf_counter()
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
                spans.append((opened, time.perf_counter()))
                if response.status_code == 200 and _stream_is_exact(raw):
                    result.correct += 1
        except httpx.HTTPError:
            pass

    async def sample_rss(stop: asyncio.Event) -> None:
        while not stop.is_set():
            result.rss_peak_mb = max(result.rss_peak_mb, server.rss_mb())
            await asyncio.sleep(0.05)

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(stop))
    start = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), time_limit + 10)
    except asyncio.TimeoutError:
        pass
    result.seconds = time.perf_counter() - start
    stop.set()
    await sampler
    result.peak_open = _peak_overlap(spans)
    result.rss_after_mb = server.rss_mb()
    return result


def _stream_is_exact(raw: bytes) -> bool:
    """Every event parsed, the last says stop, and the joined text is the echo of the prompt."""
    try:
        events = _events(raw)
        text = "".join(e["output"]["text"] for e in events)
        messages = json.loads(text)["messages"]
    except (ValueError, KeyError, TypeError):
        return False
    return events[-1]["output"]["finish_reason"] == "stop" and messages[-1]["content"] == ECHO_PROMPT


def _peak_overlap(spans: list[tuple[float, float]]) -> int:
    marks = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda m: (m[0], m[1]))
    peak = current = 0
    for _, delta in marks:
        current += delta
        peak = max(peak, current)
    return peak


def run_streams(server: Server, app_id: str, key: str, args: argparse.Namespace) -> list[StreamsResult]:
    results = []
    for n in args.streams:
        found = asyncio.run(hold_streams(server, app_id, key, n, args.stream_seconds))
        results.append(found)
        print(f"  {n:5} streams: {found.correct} exact, peak {found.peak_open} open at once, {found.seconds:.1f} s, "
              f"RSS {found.rss_before_mb:.0f} -> {found.rss_peak_mb:.0f} MB", flush=True)
    return results


# ---------------------------------------------------------------- part 3: local model


@dataclass
class Generation:
    tokens: int
    first_s: float  # time to the first text
    total_s: float
    prompt_tokens: int = 0

    @property
    def rate(self) -> float:
        return self.tokens / self.total_s if self.total_s else 0.0


@dataclass
class Batch:
    generations: list[Generation]
    wall_s: float

    @property
    def aggregate(self) -> float:
        return sum(g.tokens for g in self.generations) / self.wall_s


async def api_generate(server: Server, app_id: str, key: str, clients: int) -> Batch:
    payload = {"input": {"prompt": LOCAL_PROMPT}, "parameters": {"incremental_output": True, **LOCAL_PARAMS}}

    async def one(client: httpx.AsyncClient) -> Generation:
        began = time.perf_counter()
        first, tokens, prompt = 0.0, 0, 0
        async with client.stream("POST", completion_url(server, app_id), json=payload, headers=auth(key, sse=True)) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if not first and event.get("output", {}).get("text"):
                    first = time.perf_counter() - began
                if "usage" in event:
                    tokens = event["usage"]["models"][0]["output_tokens"]
                    prompt = event["usage"]["models"][0]["input_tokens"]
                if "code" in event:
                    raise RuntimeError(f"local model stream failed: {event}")
        return Generation(tokens, first, time.perf_counter() - began, prompt)

    async with httpx.AsyncClient(timeout=300) as client:
        began = time.perf_counter()
        generations = await asyncio.gather(*(one(client) for _ in range(clients)))
        return Batch(list(generations), time.perf_counter() - began)


class DirectModel:
    """xllamacpp's Server built exactly as openbailian.providers.local.LocalProvider builds it."""

    def __init__(self, path: Path, n_ctx: int, n_parallel: int, n_threads: int | None) -> None:
        from openbailian.providers.local import build_server

        self.server = build_server(path, n_ctx, n_parallel, n_threads)
        self.pool = ThreadPoolExecutor(max_workers=n_parallel)

    def request(self) -> dict[str, Any]:
        # The request LocalProvider sends for the app call of api_generate (no system prompt).
        return {
            "messages": [{"role": "user", "content": LOCAL_PROMPT}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "chat_template_kwargs": {"enable_thinking": False},
            **LOCAL_PARAMS,
        }

    def one(self) -> Generation:
        began = time.perf_counter()
        first, tokens, prompt = 0.0, 0, 0

        def on_chunk(chunk: dict[str, Any]) -> bool:
            nonlocal first, tokens, prompt
            if not first and any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                first = time.perf_counter() - began
            if chunk.get("usage"):
                tokens = chunk["usage"].get("completion_tokens", 0)
                prompt = chunk["usage"].get("prompt_tokens", 0)
            return False

        self.server.handle_chat_completions(self.request(), on_chunk)
        return Generation(tokens, first, time.perf_counter() - began, prompt)

    def batch(self, clients: int) -> Batch:
        began = time.perf_counter()
        futures = [self.pool.submit(self.one) for _ in range(clients)]
        return Batch([f.result() for f in futures], time.perf_counter() - began)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        del self.server


def run_local(server: Server, app_id: str, key: str, model_path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from openbailian.config import ModelSpec

    spec = ModelSpec(provider="local")
    direct = DirectModel(model_path, spec.n_ctx, spec.n_parallel, args.local_threads)
    try:
        asyncio.run(api_generate(server, app_id, key, 1))  # loads the model in the server
        direct.batch(1)
        batches: dict[tuple[str, int], list[Batch]] = {}
        for round_no in range(args.local_rounds):
            if round_no and time.monotonic() > args.deadline:
                print(f"  stopping after {round_no} rounds: the bench's time budget is spent", flush=True)
                break
            for clients in LOCAL_STREAMS:
                # One after the other, never together: the API server, then the direct call.
                batches.setdefault(("api", clients), []).append(asyncio.run(api_generate(server, app_id, key, clients)))
                batches.setdefault(("direct", clients), []).append(direct.batch(clients))
            print(f"  round {round_no + 1}/{args.local_rounds}: "
                  + ", ".join(f"{k[0]} c={k[1]} {v[-1].aggregate:.1f} tok/s" for k, v in batches.items()), flush=True)
    finally:
        direct.close()
    rows = []
    for clients in LOCAL_STREAMS:
        api, dir_ = batches[("api", clients)], batches[("direct", clients)]
        # Each API run is paired with the direct run right after it: the ratio within a pair
        # is less exposed to other processes than the ratio of two medians.
        pairs = sorted(a.aggregate / d.aggregate for a, d in zip(api, dir_))
        rows.append({"clients": clients, "api": _summary(api), "direct": _summary(dir_), "pairs": pairs})
    return rows


def _summary(batches: list[Batch]) -> dict[str, float]:
    generations = [g for b in batches for g in b.generations]
    return {
        "aggregate": statistics.median(b.aggregate for b in batches),
        "per_stream": statistics.median(g.rate for g in generations),
        "first_ms": statistics.median(g.first_s for g in generations) * 1000,
        "tokens": statistics.median(g.tokens for g in generations),
        "prompt_tokens": statistics.median(g.prompt_tokens for g in generations),
        "runs": len(batches),
    }


# ---------------------------------------------------------------- breakdown


async def _timed(work: Any, n: int = 300) -> float:
    """The median milliseconds of ``await work()`` over ``n`` calls, after a warm-up."""
    for _ in range(20):
        await work()
    times = []
    for _ in range(n):
        began = time.perf_counter()
        await work()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


async def _burst(work: Any, clients: int = 16, rounds: int = 10) -> tuple[float, float]:
    """``clients`` concurrent ``work()`` calls, ``rounds`` times: calls/s and p99 ms."""
    times: list[float] = []

    async def one() -> None:
        began = time.perf_counter()
        await work()
        times.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(one() for _ in range(clients)))
    times.sort()
    return len(times) / (time.perf_counter() - began), times[int(0.99 * (len(times) - 1))]


async def _breakdown(home: Path) -> dict[str, Any]:
    import uuid

    from openbailian.api.completion.render import collect_response
    from openbailian.config import Settings
    from openbailian.engine.call import Call
    from openbailian.engine.sessions import new_session_id
    from openbailian.runtime import Runtime
    from openbailian.services import apps as app_service
    from openbailian.services import keys as key_service

    runtime = Runtime.build(Settings(home=home))
    await runtime.migrate()
    try:
        async with runtime.db.transaction() as session:
            config = app_service.parse_config({"model": "echo"})
            app = await app_service.create_app(session, workspace_id="w", name="b", config=config, models=runtime.models)
            key = await key_service.create_key(session, "w", "k", box=runtime.tools.box)
        engine = runtime.engine

        def request() -> Call:
            return Call(app_id=app.id, workspace_id="w", request_id=str(uuid.uuid4()), prompt=ECHO_PROMPT)

        async def resolve() -> None:
            await key_service.check_key(runtime.db, key.api_key, app.id)

        async def append() -> None:
            await engine._sessions.append(  # noqa: SLF001 - measuring the store itself
                session_id=new_session_id(), app_id=app.id, workspace_id="w",
                messages=[{"role": "user", "content": ECHO_PROMPT}], answer="x" * 80, cut=False, request_id="r",
            )

        lock = asyncio.Lock()

        async def append_serialised() -> None:
            async with lock:
                await append()

        async def whole() -> None:
            run = await engine.prepare(request())
            await collect_response(run.events(), request_id="r", has_thoughts=False)

        steps = {
            "look up the app (`DatabaseAppLoader.published`)": lambda: engine._apps.published(app.id, "w"),  # noqa: SLF001
            "`Engine.prepare` (app, context sources, tools, token check)": lambda: engine.prepare(request()),
            "store the turn (`SessionStore.append`, new session)": append,
            "the whole engine call (`prepare` + `events`, JSON)": whole,
            "check the API key, reading the app's row with it (`check_key`, every call)": resolve,
        }
        found: dict[str, Any] = {"steps": {name: await _timed(work) for name, work in steps.items()}}
        found["contention"] = {
            "as is": await _burst(append),
            "serialised by one asyncio.Lock": await _burst(append_serialised),
        }
        return found
    finally:
        await runtime.aclose()


def run_breakdown(workdir: Path) -> dict[str, Any]:
    """Where one call's time goes, timed in this process on a database of its own."""
    home = workdir / "breakdown"
    home.mkdir()
    return asyncio.run(_breakdown(home))


def breakdown_lines(found: dict[str, Any], overhead_ms: float | None) -> list[str]:
    lines = ["| step (in-process, SQLite, 1 caller) | median ms |", "|---|---:|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in found["steps"].items()]
    lines += ["", "Storing turns from 16 concurrent callers (in-process):", "",
              "| SQLite writes | turns/s | p99 ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {rate:.0f} | {p99:.1f} |" for name, (rate, p99) in found["contention"].items()]
    if overhead_ms is not None:
        whole = found["steps"]["the whole engine call (`prepare` + `events`, JSON)"]
        lines += ["", f"The engine alone takes {whole:.2f} ms of the {overhead_ms:.2f} ms JSON overhead at 1 client; "
                  "the rest is FastAPI (dependencies, body parsing, validation), the middleware and rendering."]
    return lines


# ---------------------------------------------------------------- profile


def run_profile(ours: Server, app_id: str, key: str, seconds: float, workdir: Path) -> dict[str, list[str]]:
    """py-spy samples of the server under JSON, then SSE load from 16 clients: where its time goes."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"": ["py-spy is not installed (pip install py-spy); no profile taken."]}
    found = {}
    for sse in (False, True):
        out = workdir / f"profile-{sse}.txt"
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(ours.process.pid), "--duration", str(int(seconds)), "--rate", "200",
             "--format", "raw", "--gil", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        asyncio.run(drive(completion_url(ours, app_id), auth(key, sse=sse), echo_payload(sse=sse), sse=sse,
                          clients=16, total=10**6, time_limit=seconds + 1))
        recorder.wait(timeout=60)
        mode = "SSE" if sse else "JSON"
        found[mode] = summarize_profile(out.read_text()) if out.exists() else ["py-spy produced no profile."]
    return found


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _area(file: str) -> str:
    """``openbailian.engine`` for our modules, else the top package (``sqlalchemy``, ``asyncio``)."""
    parts = file.split("/")
    if parts[0] == "openbailian" and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0].removesuffix(".py")


def summarize_profile(raw: str) -> list[str]:
    """Self time by library, and the share of samples inside each openbailian function."""
    total = 0
    by_library: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [m.groupdict() for f in stack.split(";") if (m := _FRAME.match(f))]
        if not frames:
            continue
        n = int(count)
        total += n
        leaf = frames[-1]
        by_library[_area(leaf["file"])] += n
        by_function[f"`{leaf['func']}` ({leaf['file']})"] += n
        for name in {f"`{f['func']}` ({f['file']})" for f in frames if f["file"].startswith("openbailian/") and not f["file"].startswith("openbailian/cli/")}:
            ours[name] += n
    if not total:
        return ["py-spy recorded no samples."]
    pct = lambda n: f"{100 * n / total:.1f}%"  # noqa: E731
    lines = [
        f"{total} samples of the thread holding the GIL (`py-spy record --gil`), i.e. the server's "
        "Python CPU time; SQLite's own C work runs without the GIL in aiosqlite threads and is not counted.",
        "",
        "Self time by library: " + ", ".join(f"{a} {pct(n)}" for a, n in by_library.most_common(12)) + ".",
        "",
        "Inside openbailian functions (inclusive):",
        "",
        *[f"- {name}: {pct(n)}" for name, n in ours.most_common(8)],
        "",
        "Top self time:",
        "",
        *[f"- {name}: {pct(n)}" for name, n in by_function.most_common(8)],
    ]
    return lines


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "?")
    mem_kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("uvicorn", "starlette", "fastapi", "httpx", "xllamacpp")
    )
    loops = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name)]
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "versions": versions,
        "uvicorn": f"uvicorn with {', '.join(loops) if loops else 'asyncio loop and h11 (no uvloop/httptools installed)'}",
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def overhead_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| mode | clients | bare req/s | ours req/s | ours/bare | bare p50 ms | ours p50 ms | **overhead p50 ms** | bare p99 ms | ours p99 ms | requests (errors) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        bare, ours = row["bare"], row["ours"]
        overhead = ours.pct(0.5) - bare.pct(0.5)
        mark = "" if overhead <= OVERHEAD_TARGET_MS else " ✗"
        lines.append(
            f"| {row['mode']} | {row['clients']} | {bare.rps:.0f} | {ours.rps:.0f} | {ours.rps / bare.rps:.0%} "
            f"| {bare.pct(.5):.2f} | {ours.pct(.5):.2f} | **{overhead:.2f}**{mark} | {bare.pct(.99):.2f} | {ours.pct(.99):.2f} "
            f"| {bare.requests}/{ours.requests} ({bare.errors}/{ours.errors}) |"
        )
    return lines


def streams_table(results: list[StreamsResult]) -> list[str]:
    lines = [
        "| streams opened | completed exactly | peak open at once | wall s | server RSS before → peak MB | RSS per open stream KB |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        per = (r.rss_peak_mb - r.rss_before_mb) * 1024 / max(1, r.peak_open)
        lines.append(f"| {r.streams} | {r.correct} | {r.peak_open} | {r.seconds:.1f} "
                     f"| {r.rss_before_mb:.0f} → {r.rss_peak_mb:.0f} | {per:.0f} |")
    return lines


def local_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| concurrent | direct tok/s (total) | API tok/s (total) | ratio of medians | **API/direct, median of pairs** (min–max) | direct tok/s per stream | API tok/s per stream | direct first text ms | API first text ms | prompt → answer tokens (API / direct) | runs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        api, direct, pairs = row["api"], row["direct"], row["pairs"]
        ratio = statistics.median(pairs)
        mark = "" if ratio >= 0.95 else " ✗"
        lines.append(
            f"| {row['clients']} | {direct['aggregate']:.1f} | {api['aggregate']:.1f} | {api['aggregate'] / direct['aggregate']:.1%} "
            f"| **{ratio:.1%}**{mark} ({pairs[0]:.0%}–{pairs[-1]:.0%}) "
            f"| {direct['per_stream']:.1f} | {api['per_stream']:.1f} "
            f"| {direct['first_ms']:.0f} | {api['first_ms']:.0f} "
            f"| {api['prompt_tokens']:.0f} → {api['tokens']:.0f} / {direct['prompt_tokens']:.0f} → {direct['tokens']:.0f} | {api['runs']} |"
        )
    return lines


def _others(results: dict[str, Any], part: str) -> str:
    share = results.get("others", {}).get(part)
    return "" if share is None else f" Other processes kept {share:.0%} of the machine's CPU busy during this part."


def workers_table(runs: list[WorkersRun]) -> list[str]:
    """req/s, latency and where the machine's CPU went (in cores) for each code and N."""
    lines = [
        "| code | processes | req/s | × one | p50 ms | p99 ms | requests (errors) | client (wrk) | server processes "
        "| PostgreSQL | others | left for the server | server CPU ms per request | PostgreSQL CPU ms per request "
        "| start-up s |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        one = next((r.rps for r in runs if r.code == run.code and r.workers == 1), float("nan"))
        each = " + ".join(f"{cores:.2f}" for cores in run.servers)
        database = "?" if run.database is None else f"{run.database:.2f}"
        database_ms = "?" if run.database is None else f"{run.ms_per_request(run.database):.2f}"
        lines.append(
            f"| {run.code} | {run.workers} | {run.rps:.0f} | {run.rps / one:.2f} | {run.p50_ms:.2f} | {run.p99_ms:.2f} | "
            f"{run.requests} ({run.errors}) | {run.client:.2f} | {each} = {run.server:.2f} | {database} | "
            f"{run.others:.2f} | {run.left_for_server:.2f} | {run.ms_per_request(run.server):.2f} | {database_ms} | "
            f"{run.startup:.1f} |"
        )
    return lines


def _verdicts(results: dict[str, Any]) -> list[str]:
    lines = []
    for row in results.get("overhead", []):
        if row["clients"] != 1:
            continue
        overhead = row["ours"].pct(0.5) - row["bare"].pct(0.5)
        verdict = "met" if overhead <= OVERHEAD_TARGET_MS else "**missed**"
        lines.append(f"- Overhead p50 ≤ {OVERHEAD_TARGET_MS:g} ms ({row['mode']}, 1 client): {verdict}, {overhead:.2f} ms.")
    for row in results.get("overhead", []):
        if row["clients"] in (1, 16):
            share = row["ours"].rps / row["bare"].rps
            verdict = "met" if share >= RPS_TARGET else "**missed**"
            lines.append(f"- req/s ≥ {RPS_TARGET:.0%} of the bare endpoint ({row['mode']}, {row['clients']} clients): "
                         f"{verdict}, {share:.0%}.")
    workers = {run.workers: run for run in results.get("workers", []) if run.code == THIS_CODE}
    if 1 in workers and 2 in workers and workers[1].rps:
        gain = workers[2].rps / workers[1].rps
        verdict = "met" if gain >= WORKERS_TARGET else "**missed**"
        lines.append(f"- `serve --workers 2` ≥ {WORKERS_TARGET:g}× one worker (JSON, {results.get('workers_database', '?')}): "
                     f"{verdict}, {gain:.2f}×.")
    for row in results.get("local", []):
        ratio = statistics.median(row["pairs"])
        verdict = "met" if ratio >= 0.95 else "**missed**"
        lines.append(f"- API ≥ 95% of the direct token rate ({row['clients']} concurrent): {verdict}, {ratio:.1%} "
                     f"(pairs {row['pairs'][0]:.0%}–{row['pairs'][-1]:.0%}).")
    return lines


def report(info: dict[str, str], command: str, results: dict[str, Any], args: argparse.Namespace) -> str:
    out = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} on {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, "
        f"Python {info['python']} ({info['versions']}; {info['uvicorn']}). "
        f"Load average at the start: {info['load']} (the machine is shared, so figures carry noise).",
        "",
        f"Command (repository root): `{command}`",
        "",
        "Both servers are separate uvicorn processes (one worker, `uvicorn.run` defaults, access log on, "
        "output to a file) on 127.0.0.1, driven from one bench process, one `httpx.AsyncClient` per simulated client over "
        "keep-alive connections, so client, server and bare server share the same 2 cores. The bare "
        "endpoint is a plain Starlette route that replays byte for byte a JSON and an SSE answer recorded "
        "from our server. Ours is `openbailian serve` on SQLite with the `echo` model: every call "
        "authenticates, loads the app, creates a session and stores the turn. Targets: overhead p50 ≤ 1 ms and ≥ 50% of the bare req/s at 1 and 16 clients; "
        "API ≥ 95% of the direct token rate.",
        "",
    ]
    if "overhead" in results:
        out += [
            f"### Completion endpoint vs bare Starlette (`echo`; {args.requests_1} requests at 1 client, "
            f"{args.requests_n} at 16 and 128; after a warm-up)",
            "",
            *overhead_table(results["overhead"]),
            "",
            "Latency is the client's view of the whole response (the last SSE byte for streams); "
            "✗ marks a missed target. At 16 and 128 clients p50 is mostly queueing, so the req/s ratio "
            "says more than the p50 difference there." + _others(results, "overhead"),
            "",
        ]
    if "streams" in results:
        out += [
            f"### Open SSE streams (echo model waiting {SLOW_DELAY} s between its 4 pieces, ≈2 s per stream)",
            "",
            *streams_table(results["streams"]),
            "",
            "“Completed exactly”: status 200, every event parsed, last `finish_reason` is `stop`, and the "
            "joined incremental text is the exact echo of the prompt. Peak open: streams whose headers had "
            "arrived and whose body had not yet ended, at the busiest moment." + _others(results, "streams"),
            "",
        ]
    if "local" in results:
        out += [
            f"### `local` model: through the API vs xllamacpp called directly "
            f"(`{LOCAL_PROMPT}`, {LOCAL_PARAMS}; medians of {args.local_rounds} rounds)",
            "",
            *local_table(results["local"]),
            "",
            "Both use the bundled Qwen2.5-Coder-0.5B-Instruct Q4 GGUF and the same xllamacpp parameters "
            f"as `LocalProvider` (n_ctx 4096 per slot, 4 slots, threads = {args.local_threads or 'all cores'}). Tokens are "
            "`completion_tokens` from the model's usage; rates are tokens over the whole call (prompt "
            "processing included) as the client sees it. API and direct runs alternate, never overlap."
            + _others(results, "local"),
            "",
        ]
    if "workers" in results:
        out += [
            f"### `openbailian serve --workers N` on {DATABASES[args.workers_database]} (`echo`, JSON, "
            f"{args.workers_clients} connections, "
            f"{args.workers_seconds} s after a 3 s warm-up)",
            "",
            *workers_table(results["workers"]),
            "",
            f"Each N on a fresh database ({DATABASES[args.workers_database]}; `serve --no-background`: no background "
            "work beside the HTTP processes). The load comes from wrk (one thread, keep-alive connections); "
            "CPU columns are cores busy during the measured run, from the kernel's accounting of each "
            "process (wrk's own rusage, every process of serve's tree, every process of the PostgreSQL "
            "server when it runs on this machine; others: the rest of the machine's busy time). "
            "\"Left for the server\" is the cores minus client, PostgreSQL and others; start-up is from "
            "starting `serve` until every HTTP process had logged its startup (each is a fresh interpreter)."
            + (f" Rows `{args.workers_before.name}`: the servers ran that checkout's code (same client, "
               "same PostgreSQL, in the same run)." if args.workers_before else ""),
            "",
        ]
    if "breakdown" in results:
        json_1 = next((r for r in results.get("overhead", []) if r["mode"] == "JSON" and r["clients"] == 1), None)
        overhead_ms = json_1["ours"].pct(0.5) - json_1["bare"].pct(0.5) if json_1 else None
        out += ["### Where one call's time goes", "", *breakdown_lines(results["breakdown"], overhead_ms), ""]
    for mode, lines in (results.get("profile") or {}).items():
        out += [f"### Where the server's time goes (py-spy, {mode or 'JSON'}, 16 clients, {args.profile_seconds:.0f} s)", "",
                *lines, ""]
    if results.get("profile"):
        out += ["SQLAlchemy's async layer runs ORM work in greenlets, whose stacks py-spy sees without "
                "their callers: the inclusive openbailian figures undercount database work, the self time "
                "by library does not.", ""]
    verdicts = _verdicts(results)
    if verdicts:
        out += ["### Targets", "", *verdicts, ""]
    if results.get("notes"):
        out += ["### Reading the figures", "", *results["notes"], ""]
    return "\n".join(out)


def write_doc(section: str) -> None:
    """Replace only our section of docs/benchmarks.md, creating the file when missing."""
    if DOC.exists():
        text = DOC.read_text()
    else:
        text = "\n".join([
            "# Benchmarks",
            "",
            "Figures measured by the scripts in `bench/` (plain Python, run by hand from the repository "
            "root, each printing markdown tables). Every section names its machine, date and exact "
            "command; figures from different machines are not comparable.",
            "",
            SECTION,
            "",
            *[f"{title}\n\nSee `bench/{name}.py`; figures pending.\n" for title, name in PLACEHOLDERS],
        ])
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if found := pattern.search(text):
        # A hand-written "### Analysis" at the end of the section survives reruns.
        kept = found.group(0).partition(f"\n{ANALYSIS}")
        section = section.rstrip() + (f"\n\n{ANALYSIS}{kept[2]}" if kept[1] else "")
        text = text[: found.start()] + section.rstrip() + "\n\n" + text[found.end():]
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text.rstrip() + "\n")


# ---------------------------------------------------------------- part 4: serve --workers N

# wrk (C, one thread) costs ~0.05 ms of CPU per request against the server's several:
# a Python load generator would take about as much of the two cores as the server.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("OB_BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("OB_BENCH_KEY")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'OB_BENCH {"requests": %d, "us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d, "p50": %d, "p99": %d}\\n', summary.requests, summary.duration, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""
THIS_CODE = "this checkout"
DATABASES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
WRK_MISSING = "needs wrk, the load generator (Debian/Ubuntu: apt-get install wrk)"
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class WorkersRun:
    """One ``serve --workers N`` run under wrk: the rate and the CPU each party took (in cores)."""

    code: str  # which openbailian served: THIS_CODE, or the --workers-before checkout
    workers: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    stored: int  # sessions in the database afterwards (each answered call stored its turn)
    client: float  # wrk
    servers: list[float]  # each process of serve's tree
    database: float | None  # the local PostgreSQL server's processes; None when not on this machine
    others: float  # every other process on the machine
    cores: int
    startup: float = float("nan")  # seconds from starting serve until all its HTTP processes were up

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server(self) -> float:
        return sum(self.servers)

    @property
    def left_for_server(self) -> float:
        """Cores the client, the database and other processes left to the server processes."""
        return self.cores - self.client - (self.database or 0.0) - self.others

    def ms_per_request(self, cores: float) -> float:
        return cores / self.rps * 1000 if self.rps else float("nan")


def _proc_ticks(pid: int, *, reaped: bool = False) -> int:
    """User + system ticks of ``pid``; ``reaped``: with those of its children that ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(stat[i]) for i in ((11, 12, 13, 14) if reaped else (11, 12)))
    except (OSError, IndexError):
        return 0


def _parents() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return found


def _tree(root: int) -> list[int]:
    """``root`` and its descendants."""
    parents = _parents()
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def _ticks(root: int | None) -> dict[int, int]:
    """CPU ticks of ``root``'s tree by process (a process started since the last look counts
    from its start; one that ended in between, e.g. a PostgreSQL backend whose connection
    closed, counts in ``root``'s, which reaped it)."""
    return {pid: _proc_ticks(pid, reaped=pid == root) for pid in _tree(root)} if root else {}


def _machine_busy_ticks() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def _postgres_root(database_url: str) -> int | None:
    """The postmaster of the server at ``database_url`` when it runs on this machine (None: not
    here, or SQLite, which runs inside the server processes)."""
    import psycopg
    from sqlalchemy.engine import make_url

    if make_url(database_url).get_backend_name() != "postgresql":
        return None
    plain = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        try:
            parent = int(Path(f"/proc/{backend[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None  # another machine (or another PID namespace)
    return parent


def _stored_sessions(database_url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM chat_sessions")).scalar() or 0)
    finally:
        engine.dispose()


def _all_started(server: Server, log: Path, processes: int, timeout: float = 300) -> float:
    """When all ``processes`` HTTP processes of ``server`` had started (uvicorn logs each one's
    startup; healthz answers as soon as the first is up)."""
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count("Application startup complete") < processes:
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: not all {processes} processes started; see {log}")
        time.sleep(0.05)
    return time.monotonic()


def wrk_run(url: str, script: Path, env: dict[str, str], *, clients: int, seconds: int) -> tuple[dict[str, Any], float]:
    """One wrk run (one thread, ``clients`` keep-alive connections): its summary and its own CPU
    (from the kernel's accounting of the child, in CPU seconds)."""
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or "OB_BENCH " not in output:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output[-2000:]}")
    return json.loads(output.split("OB_BENCH ", 1)[1].splitlines()[0]), usage.ru_utime + usage.ru_stime


def measure_workers(
    code: str, workers: int, server: Server, url: str, script: Path, env: dict[str, str], database_url: str,
    args: argparse.Namespace,
) -> WorkersRun:
    """Warm up, then one measured wrk run with the CPU of every party taken around it."""
    wrk_run(url, script, env, clients=args.workers_clients, seconds=3)
    database_root = _postgres_root(database_url)
    before = _ticks(server.process.pid), _ticks(database_root), _machine_busy_ticks()
    began = time.monotonic()
    summary, client_cpu = wrk_run(url, script, env, clients=args.workers_clients, seconds=args.workers_seconds)
    wall = time.monotonic() - began
    after = _ticks(server.process.pid), _ticks(database_root), _machine_busy_ticks()
    server_cores = [(ticks - before[0].get(pid, 0)) / _TICK / wall for pid, ticks in after[0].items()]
    database_cores = sum(t - before[1].get(pid, 0) for pid, t in after[1].items()) / _TICK / wall if database_root else None
    busy = (after[2] - before[2]) / _TICK / wall
    client = client_cpu / wall
    errors = sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WorkersRun(
        code=code, workers=workers, requests=summary["requests"], errors=errors, seconds=summary["us"] / 1e6,
        p50_ms=summary["p50"] / 1000, p99_ms=summary["p99"] / 1000, stored=_stored_sessions(database_url),
        client=client, servers=[c for c in server_cores if c >= 0.005] or [0.0], database=database_cores,
        others=max(0.0, busy - client - sum(server_cores) - (database_cores or 0.0)), cores=os.cpu_count() or 1,
    )


def _pg_database(server_url: str, name: str) -> str:
    """A fresh database ``name`` on the PostgreSQL server of ``server_url``; its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def run_workers(args: argparse.Namespace, tmp: Path) -> list[WorkersRun]:
    """``openbailian serve --workers N`` (N = 1, then 2) on PostgreSQL: JSON echo calls from wrk
    at ``args.workers_clients`` connections, each N on a fresh database."""
    runs = []
    exe = str(Path(sys.executable).parent / "openbailian")
    script = tmp / "completion.lua"
    script.write_text(WRK_SCRIPT)
    codes: list[tuple[str, Path | None]] = [(THIS_CODE, None)]
    if args.workers_before:
        codes.insert(0, (f"`{args.workers_before.name}`", args.workers_before))
    for (code, checkout), workers in ((c, n) for c in codes for n in (1, 2)):
        home = tmp / f"workers-{len(runs)}"
        home.mkdir()
        env = base_env(home, None)
        if checkout is not None:  # its openbailian package ahead of this one (installed editable)
            env["PYTHONPATH"] = str(checkout.resolve())
        database_url = (
            f"sqlite:///{home / 'bench.db'}" if args.workers_database == "sqlite"
            else _pg_database(args.postgres_url, f"ob_bench_workers_{len(runs)}")
        )
        env["OPENBAILIAN_DATABASE_URL"] = database_url
        key = cli(env, "keys", "create", "--workspace", "bench")["api_key"]
        app_id = cli(env, "apps", "create", "--name", "bench-echo", "--model", "echo", "--workspace", "bench")["app_id"]
        port = free_port()
        log = tmp / f"workers-{len(runs)}.log"
        began = time.monotonic()
        server = start_server(
            f"workers-{len(runs)}", [exe, "serve", "--port", str(port), "--workers", str(workers), "--no-background"],
            env, port, log,
        )
        try:
            startup = _all_started(server, log, workers) - began
            url = completion_url(server, app_id)
            answer = httpx.post(url, json=echo_payload(sse=False), headers=auth(key), timeout=30)
            if answer.status_code != 200 or FINISH_STOP not in answer.content:
                raise RuntimeError(f"the echo app did not answer: {answer.status_code} {answer.text[:300]}")
            wrk_env = {**os.environ, "OB_BENCH_BODY": json.dumps(echo_payload(sse=False), ensure_ascii=False),
                       "OB_BENCH_KEY": key}
            run = measure_workers(code, workers, server, url, script, wrk_env, database_url, args)
            run.startup = startup
            if run.stored < run.requests:
                raise RuntimeError(f"{run.requests} calls answered but only {run.stored} turns stored")
        finally:
            server.stop()
        runs.append(run)
        print(f"  {code}, --workers {workers}: {run.rps:7.0f} req/s p50 {run.p50_ms:6.2f} ms  errors {run.errors}  "
              f"CPU: client {run.client:.2f}, server {run.server:.2f}, PostgreSQL "
              f"{'?' if run.database is None else f'{run.database:.2f}'}, others {run.others:.2f} cores", flush=True)
    return runs


# ---------------------------------------------------------------- main


def base_env(home: Path, local_threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBAILIAN_")}
    models: dict[str, Any] = {"slow-echo": {"provider": "echo", "delay": SLOW_DELAY}}
    if local_threads:
        from openbailian.providers.bundled import BUNDLED_MODEL_ID

        models["local"] = {"provider": "local", "n_threads": local_threads, "model_id": BUNDLED_MODEL_ID}
    env.update({
        "OPENBAILIAN_HOME": str(home),
        "OPENBAILIAN_RATE_LIMIT_PER_MINUTE": str(10**9),
        "OPENBAILIAN_MODELS": json.dumps(models),
    })
    return env


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests-1", type=int, default=500, help="requests at 1 client")
    parser.add_argument("--requests-n", type=int, default=2000, help="requests at 16 and 128 clients")
    parser.add_argument("--level-seconds", type=float, default=45.0, help="time cap per load level")
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--stream-seconds", type=float, default=60.0, help="time cap per streams level")
    parser.add_argument("--local-rounds", type=int, default=5)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run")
    parser.add_argument("--skip-local", action="store_true", help="same as leaving 'local' out of --parts")
    parser.add_argument("--local-threads", type=int, default=None,
                        help="llama.cpp threads for the local model, both ways (default: as LocalProvider, all cores)")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy under load")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--model-cache", type=Path,
                        default=Path(os.environ.get("OPENBAILIAN_HOME", "~/.openbailian")).expanduser() / "models",
                        help="where the bundled GGUF is joined once (default: the home's models dir)")
    parser.add_argument("--max-minutes", type=float, default=9.0,
                        help="time budget; the local-model rounds stop early when it is spent")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for other processes to leave the CPU idle")
    parser.add_argument("--postgres-url", default=os.environ.get("OPENBAILIAN_TEST_POSTGRES_URL"),
                        help="PostgreSQL server for the 'workers' part (a database per run is created on it; "
                        "default OPENBAILIAN_TEST_POSTGRES_URL); without it that part is skipped")
    parser.add_argument("--workers-clients", type=int, default=32, help="connections of the 'workers' part")
    parser.add_argument("--workers-seconds", type=int, default=20, help="measured seconds per N in the 'workers' part")
    parser.add_argument("--workers-database", choices=list(DATABASES), default="postgresql",
                        help="the database of the 'workers' part (sqlite: a file in each run's home)")
    parser.add_argument("--workers-before", type=Path, default=None, metavar="CHECKOUT",
                        help="also run the 'workers' part with the openbailian package of this checkout (e.g. a "
                        "`git worktree add --detach DIR <commit>`), before this one's: a before/after in one run")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.relative_to(ROOT)} alone")
    return parser.parse_args(argv)


def _interrupt(*_: Any) -> None:
    """SIGTERM (``timeout``, kill): unwind through the finally blocks so no server is left behind."""
    raise KeyboardInterrupt


def wait_quiet(meter: CpuMeter, max_seconds: float, threshold: float = 0.15) -> float:
    """Wait (up to ``max_seconds``) until other processes use under ``threshold`` of the CPU."""
    deadline = time.monotonic() + max_seconds
    while True:
        before = meter.snapshot()
        time.sleep(2)
        share = meter.others(before, meter.snapshot())
        if share < threshold or time.monotonic() >= deadline:
            return share
        print(f"   other processes use {share:.0%} of the CPU; waiting for a quieter moment", flush=True)


def measure(meter: CpuMeter, results: dict[str, Any], part: str, work: Any) -> None:
    """Run one part and note how busy the rest of the machine was meanwhile."""
    before = meter.snapshot()
    results[part] = work()
    results.setdefault("others", {})[part] = meter.others(before, meter.snapshot())


def run_all(args: argparse.Namespace, tmp: Path, results: dict[str, Any], servers: list[Server]) -> None:
    if args.parts == ["workers"]:  # it starts its own servers
        run_workers_part(args, tmp, results, CpuMeter())
        return
    home = tmp / "home"
    home.mkdir()
    env = base_env(home, args.local_threads)
    model_path = None
    if "local" in args.parts:
        from openbailian.providers.bundled import ensure_bundled_model

        model_path = ensure_bundled_model(args.model_cache)
        (home / "models").symlink_to(model_path.parent, target_is_directory=True)
    key = cli(env, "keys", "create", "--workspace", "bench")["api_key"]
    apps = {
        model: cli(env, "apps", "create", "--name", f"bench-{model}", "--model", model, "--workspace", "bench")["app_id"]
        for model in ("echo", "slow-echo", *(("local",) if "local" in args.parts else ()))
    }
    ours_port, bare_port = free_port(), free_port()
    exe = str(Path(sys.executable).parent / "openbailian")
    ours = start_server("ours", [exe, "serve", "--port", str(ours_port)], env, ours_port, tmp / "ours.log")
    servers.append(ours)
    record_bodies(ours, apps["echo"], key, tmp / "bodies.json")
    bare_argv = [sys.executable, __file__, "serve-bare", str(bare_port), str(tmp / "bodies.json")]
    bare = start_server("bare", bare_argv, env, bare_port, tmp / "bare.log")
    servers.append(bare)
    meter = CpuMeter()
    meter.pids += [ours.process.pid, bare.process.pid]
    if args.wait_quiet:
        began = time.monotonic()
        results["quiet_start"] = wait_quiet(meter, args.wait_quiet)
        args.deadline += time.monotonic() - began  # waiting is not part of the budget

    if "overhead" in args.parts:
        print("1. completion endpoint vs bare Starlette", flush=True)
        measure(meter, results, "overhead", lambda: run_overhead(ours, bare, apps["echo"], key, args))
    bare.stop()
    meter.pids.remove(bare.process.pid)
    if "overhead" in args.parts:
        print("   timing the steps of one call in-process", flush=True)
        results["breakdown"] = run_breakdown(tmp)
    if args.profile:
        print("   profiling the server with py-spy", flush=True)
        results["profile"] = run_profile(ours, apps["echo"], key, args.profile_seconds, tmp)
    if "streams" in args.parts:
        print("2. open SSE streams", flush=True)
        measure(meter, results, "streams", lambda: run_streams(ours, apps["slow-echo"], key, args))
    if model_path is not None:
        print("3. local model: API vs xllamacpp direct", flush=True)
        measure(meter, results, "local", lambda: run_local(ours, apps["local"], key, model_path, args))
    if "workers" in args.parts:
        ours.stop()
        run_workers_part(args, tmp, results, meter)


def run_workers_part(args: argparse.Namespace, tmp: Path, results: dict[str, Any], meter: CpuMeter) -> None:
    if args.workers_database == "postgresql" and not args.postgres_url:
        print("4. serve --workers N: skipped (no --postgres-url)", flush=True)
    elif shutil.which("wrk") is None:
        print(f"4. serve --workers N: skipped: {WRK_MISSING}", flush=True)
    else:
        if args.wait_quiet:
            results["quiet_start"] = wait_quiet(meter, args.wait_quiet)
        results["workers_database"] = DATABASES[args.workers_database]
        print(f"4. serve --workers 1 and 2 on {results['workers_database']}", flush=True)
        measure(meter, results, "workers", lambda: run_workers(args, tmp))


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve-bare"]:
        serve_bare(int(argv[1]), Path(argv[2]))
        return
    args = parse_args(argv)
    args.deadline = time.monotonic() + args.max_minutes * 60
    signal.signal(signal.SIGTERM, _interrupt)
    if args.skip_local and "local" in args.parts:
        args.parts.remove("local")
    command = ".venv/bin/python bench/core.py" + ("" if not argv else " " + " ".join(argv))
    info = machine()
    results: dict[str, Any] = {}
    servers: list[Server] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="openbailian-bench-") as tmp:
        try:
            run_all(args, Path(tmp), results, servers)
        finally:
            for server in servers:
                server.stop()
    print(f"\n(bench took {time.monotonic() - started:.0f} s)\n")
    section = report(info, command, results, args)
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"\nWrote the '{SECTION[3:]}' section of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
