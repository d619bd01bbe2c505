"""Can a local GGUF model answer the seed's knowledge question from retrieved passages?

    .venv/bin/python bench/local_rag.py [--model PATH.gguf] [--orders 8]

The seed's "请帮我推荐一款3000元以下的手机" against a catalogue in which exactly one
phone costs under 3000元. The four passages reach the model exactly as an app call
puts them in its context (``augmentation_for`` + ``system_message``), in several
orders, at temperature 0 with a fixed seed, through the product's ``LocalProvider``.
An answer counts as right when it names the one phone under 3000元 and no other.
A look-up question on the same passages and the bare comparisons ("2499元低于3000元吗?")
show whether the model reads the data and whether it can compare the prices at all.
``--app-runs N`` also asks the seed question N times (seeds 1..N) end to end, as a user
would: the catalogue as a .docx in a knowledge base, ingested, retrieved and answered by a
published app through the completion API (this replaced a test that could not fail).
Without ``--model`` it measures the bundled default. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openbailian.config import Settings  # noqa: E402
from openbailian.engine.context import system_message  # noqa: E402
from openbailian.knowledge.retrieve import Hit  # noqa: E402
from openbailian.knowledge.source import augmentation_for  # noqa: E402
from openbailian.providers.base import GenerationOptions  # noqa: E402
from openbailian.providers.bundled import ensure_bundled_model  # noqa: E402
from openbailian.providers.local import LocalProvider  # noqa: E402

SEED_QUESTION = "请帮我推荐一款3000元以下的手机"
LOOKUP_QUESTION = "星尘 S9 Pro 的参考售价是多少？"
CATALOGUE = [
    ("通义 Vivid 7", 3299, "6.5英寸屏幕，8GB RAM，256GB存储，5000万像素主摄，拍照出色。"),
    ("百炼 Zephyr Z9", 2499, "6.4英寸屏幕，6GB RAM，128GB存储，4000mAh电池，轻薄便携。"),
    ("星尘 S9 Pro", 5999, "旗舰手机，6.9英寸2K屏幕，12GB RAM，512GB存储，支持卫星通话。"),
    ("云帆 Note 12", 4199, "6.7英寸屏幕，8GB RAM，256GB存储，5500mAh大电池。"),
]
RIGHT = "百炼 Zephyr Z9"
OPTIONS = GenerationOptions(temperature=0.0, seed=1234, max_tokens=400)


def hits_in(order: tuple[int, ...]) -> list[Hit]:
    return [
        Hit(chunk_id=i, base_id="kb", document_id=f"doc{i}", doc_name="百炼系列手机产品介绍.docx",
            title=CATALOGUE[i][0], text=f"{CATALOGUE[i][0]}\n{CATALOGUE[i][2]}参考售价：{CATALOGUE[i][1]}元。")
        for i in order
    ]


async def answer(provider: LocalProvider, system: str, question: str, options: GenerationOptions = OPTIONS) -> str:
    messages = [*system_message("", [], [system]), {"role": "user", "content": question}]
    pieces = [chunk.text async for chunk in provider.stream(messages, options)]
    return "".join(pieces).strip()


def names_only_the_right_phone(text: str) -> bool:
    others = [name.split()[-1] for name, _, _ in CATALOGUE if name != RIGHT]
    return RIGHT.split()[-1] in text and not any(word in text for word in others)


async def measure(path: Path, orders: int) -> None:
    provider = LocalProvider(path, model_id=path.stem, n_ctx=4096, n_parallel=1)
    try:
        permutations = list(itertools.permutations(range(len(CATALOGUE))))
        random.Random(0).shuffle(permutations)
        right = looked_up = 0
        started = time.perf_counter()
        for order in permutations[:orders]:
            block = augmentation_for(hits_in(order), indexed=False, show_sources=False).context_blocks[0]
            right += names_only_the_right_phone(await answer(provider, block, SEED_QUESTION))
            looked_up += "5999" in await answer(provider, block, LOOKUP_QUESTION)
        seconds = time.perf_counter() - started
        short = GenerationOptions(temperature=0.0, seed=1234, max_tokens=8)
        comparisons = 0
        for _, price, _ in CATALOGUE:
            reply = await answer(provider, "", f"{price}元低于3000元吗？只回答是或否。", short)
            comparisons += reply.startswith("是") == (price < 3000)
    finally:
        await provider.aclose()
    print(f"model: `{path.name}` ({path.stat().st_size / 2**20:.0f} MiB)\n")
    print("| check | right | of |")
    print("|---|---|---|")
    print(f"| seed question names only {RIGHT} | {right} | {orders} |")
    print(f"| look-up question (星尘 S9 Pro → 5999) | {looked_up} | {orders} |")
    print(f"| bare price comparison with 3000元 | {comparisons} | {len(CATALOGUE)} |")
    print(f"\n{2 * orders} answers in {seconds:.0f} s")


def make_catalogue(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("百炼系列手机产品介绍", level=1)
    for name, price, spec in CATALOGUE:
        document.add_heading(name, level=2)
        document.add_paragraph(f"{spec}参考售价：{price}元。")
    document.save(path)
    return path


async def through_an_app(path: Path, runs: int) -> None:
    """The seed question through a knowledge app, ``runs`` times; prints how often it was right."""
    import httpx

    from openbailian.api.app import create_app
    from openbailian.runtime import Runtime

    home = Path(tempfile.mkdtemp(prefix="bench-local-rag-"))
    settings = Settings(home=home, admin_token="bench", default_model="local",
                        models={"local": {"provider": "local", "path": str(path)}})
    runtime = Runtime.build(settings)
    await runtime.migrate()
    await runtime.start()
    transport = httpx.ASGITransport(app=create_app(settings, runtime=runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=None) as http:
            admin = {"Authorization": "Bearer bench"}
            key = (await http.post("/manage/v1/workspaces/bench/keys", json={}, headers=admin)).json()["api_key"]
            auth = {"Authorization": f"Bearer {key}"}
            index_id = (await http.post("/manage/v1/knowledge/bases", json={"name": "phones"}, headers=auth)).json()[
                "index_id"]
            catalogue = make_catalogue(home / "百炼系列手机产品介绍.docx")
            added = await http.post(f"/manage/v1/knowledge/bases/{index_id}/files", headers=auth,
                                    files=[("files", (catalogue.name, catalogue.read_bytes()))])
            file_id = added.json()["files"][0]["file_id"]
            while (status := (await http.get(f"/manage/v1/knowledge/files/{file_id}", headers=auth)).json()[
                    "status"]) != "FILE_IS_READY":
                if status.endswith("FAILED"):
                    raise SystemExit(f"the catalogue was not ingested: {status}")
                await asyncio.sleep(0.2)
            app_id = (await http.post("/manage/v1/apps", headers=auth, json={
                "name": "phones", "model": "local", "knowledge_enabled": True, "knowledge_base_ids": [index_id],
            })).json()["app_id"]
            right, started = 0, time.perf_counter()
            for seed in range(1, runs + 1):
                response = await http.post(f"/api/v1/apps/{app_id}/completion", headers=auth, json={
                    "input": {"prompt": SEED_QUESTION}, "parameters": {"temperature": 0.0, "seed": seed},
                })
                right += names_only_the_right_phone(response.json()["output"]["text"])
            seconds = time.perf_counter() - started
    finally:
        await runtime.aclose()
    print(f"\n| end to end (docx → knowledge base → app call), seed question names only {RIGHT} | {right} | {runs} |")
    print(f"\n{runs} app answers in {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the bundled model)")
    parser.add_argument("--orders", type=int, default=8, help="passage orders to try")
    parser.add_argument("--app-runs", type=int, default=0, help="also ask the seed question end to end, N times")
    args = parser.parse_args()
    path = args.model or ensure_bundled_model(Settings().model_cache_dir)
    asyncio.run(measure(path, args.orders))
    if args.app_runs:
        asyncio.run(through_an_app(path, args.app_runs))


if __name__ == "__main__":
    main()
