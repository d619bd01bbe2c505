"""Split ``<think>…</think>`` blocks out of a streamed answer.

Reasoning models served without a reasoning parser (llama.cpp, Ollama, raw
vLLM) put their thinking inline. :class:`ThinkTagSplitter` receives text pieces
as they stream and returns ``(reasoning, text)`` pieces, holding back only the
few characters that could be the start of a tag split across two pieces.
"""

from __future__ import annotations

__all__ = ["ThinkTagSplitter"]

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


class ThinkTagSplitter:
    def __init__(self) -> None:
        self._buffer = ""
        self._thinking = False
        self._seen_answer = False

    def feed(self, piece: str) -> tuple[str, str]:
        self._buffer += piece
        reasoning: list[str] = []
        text: list[str] = []
        while self._buffer:
            tag = CLOSE_TAG if self._thinking else OPEN_TAG
            index = self._buffer.find(tag)
            if index >= 0:
                self._emit(self._buffer[:index], reasoning, text)
                self._buffer = self._buffer[index + len(tag) :]
                self._thinking = not self._thinking
                continue
            keep = _partial_suffix(self._buffer, tag)
            self._emit(self._buffer[: len(self._buffer) - keep], reasoning, text)
            self._buffer = self._buffer[len(self._buffer) - keep :]
            break
        return "".join(reasoning), "".join(text)

    def flush(self) -> tuple[str, str]:
        reasoning: list[str] = []
        text: list[str] = []
        self._emit(self._buffer, reasoning, text)
        self._buffer = ""
        return "".join(reasoning), "".join(text)

    def _emit(self, piece: str, reasoning: list[str], text: list[str]) -> None:
        if not piece:
            return
        if self._thinking:
            reasoning.append(piece)
            return
        if not self._seen_answer:
            # The blank line models put between </think> and the answer is layout, not answer.
            piece = piece.lstrip("\n") if not text else piece
            if not piece:
                return
            self._seen_answer = True
        text.append(piece)


def _partial_suffix(buffer: str, tag: str) -> int:
    """Length of the longest suffix of ``buffer`` that is a proper prefix of ``tag``."""
    for length in range(min(len(tag) - 1, len(buffer)), 0, -1):
        if buffer.endswith(tag[:length]):
            return length
    return 0
