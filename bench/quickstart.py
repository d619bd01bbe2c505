"""How long the README's quickstart answer takes on the bundled local model, by generation defaults.

    .venv/bin/python bench/quickstart.py [--runs 5]

The quickstart's call (``examples/quickstart.py``: "你是谁？" to the demo app, whose
instructions ``openbailian serve --demo`` sets) asked through the product's ``LocalProvider``
with each set of defaults in turn, interleaved run by run so that a busy machine slows both
alike; seeds 1..N. Prints each set's median seconds and output tokens, and the ratio to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openbailian.cli.serve import DEMO_INSTRUCTIONS  # noqa: E402
from openbailian.config import BUILTIN_MODELS, Settings  # noqa: E402
from openbailian.providers.base import GenerationOptions  # noqa: E402
from openbailian.providers.bundled import ensure_bundled_model  # noqa: E402
from openbailian.providers.local import LocalProvider  # noqa: E402

PROMPT = "你是谁？"
LOCAL = BUILTIN_MODELS["local"]
DEFAULTS = {
    "before: max_tokens 1024, llama.cpp's sampling": {"max_tokens": 1024},
    "now: the bundled model's defaults": {
        "max_tokens": LOCAL.max_tokens, "temperature": LOCAL.temperature, "top_p": LOCAL.top_p, "top_k": LOCAL.top_k,
    },
}


async def one(provider: LocalProvider, options: GenerationOptions) -> tuple[float, int]:
    messages = [{"role": "system", "content": DEMO_INSTRUCTIONS}, {"role": "user", "content": PROMPT}]
    started = time.perf_counter()
    tokens = 0
    async for chunk in provider.stream(messages, options):
        tokens = chunk.output_tokens or tokens
    return time.perf_counter() - started, tokens


async def measure(runs: int) -> None:
    path = ensure_bundled_model(Settings().model_cache_dir)
    provider = LocalProvider(path, model_id=path.stem, n_ctx=4096, n_parallel=1)
    seconds: dict[str, list[float]] = {name: [] for name in DEFAULTS}
    tokens: dict[str, list[int]] = {name: [] for name in DEFAULTS}
    try:
        for seed in range(1, runs + 1):
            for name, values in DEFAULTS.items():
                took, count = await one(provider, GenerationOptions(seed=seed, **values))
                seconds[name].append(took)
                tokens[name].append(count)
    finally:
        await provider.aclose()
    first = statistics.median(seconds[next(iter(DEFAULTS))])
    print("| defaults | median s | median output tokens | time ratio |")
    print("|---|---:|---:|---:|")
    for name in DEFAULTS:
        median = statistics.median(seconds[name])
        print(f"| {name} | {median:.1f} | {statistics.median(tokens[name]):.0f} | {median / first:.2f} |")
    print(f"\n{runs} runs each; all times: {seconds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(measure(parser.parse_args().runs))


if __name__ == "__main__":
    main()
