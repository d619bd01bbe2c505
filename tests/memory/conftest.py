"""Memory test helpers: a fast deterministic embedder, a database, a scripted model."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

import numpy as np
import pytest

from openbailian.config import Settings
from openbailian.providers.base import ChatMessage, GenerationOptions, ModelChunk
from openbailian.runtime import Runtime


class FakeEmbedder:
    """Hashed character bigrams: texts sharing words are close; fast and deterministic."""

    dim = 256
    name = "fake"

    def _one(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        text = re.sub(r"\s+", "", text.lower())
        for gram in [text[i : i + 2] for i in range(max(1, len(text) - 1))]:
            digest = hashlib.blake2b(gram.encode(), digest_size=4).digest()
            vector[int.from_bytes(digest, "little") % self.dim] += 1.0
        norm = np.linalg.norm(vector)
        return vector / norm if norm else vector

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._one(text)


class ScriptedProvider:
    """A model that always answers ``reply`` (and records what it was asked)."""

    model_id = "scripted"
    context_length = 8192

    def __init__(self, reply: str = "", *, fail: bool = False) -> None:
        self.reply = reply
        self.fail = fail
        self.calls: list[list[ChatMessage]] = []

    async def stream(self, messages: list[ChatMessage], options: GenerationOptions) -> AsyncIterator[ModelChunk]:
        self.calls.append(messages)
        if self.fail:
            raise RuntimeError("model down")
        yield ModelChunk(text=self.reply)
        yield ModelChunk(finish_reason="stop", input_tokens=1, output_tokens=1)

    async def count_tokens(self, messages: list[ChatMessage]) -> int:
        return 1

    async def aclose(self) -> None:
        return None


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = Runtime.build(settings)
    await runtime.migrate()
    yield runtime
    await runtime.aclose()
