"""Tool calls written as text, as Qwen-style local models do.

Qwen2.5 calls a function by writing::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "北京"}}
    </tool_call>

Small models also write a bare JSON object naming a known tool, wrap it in a
code fence, forget the closing tag, put the arguments in a JSON string, or
use ``parameters``/``args`` for ``arguments``. :func:`parse_tool_calls` reads
all of these; :class:`ToolCallFilter` does it while streaming, passing normal
text on at once and holding back only what may be a tool call.
:func:`tools_system_prompt` is the Qwen2.5 chat template's tool section, for a
backend whose template does not render ``tools`` itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from openbailian.providers.base import ToolCall

__all__ = ["parse_tool_calls", "ToolCallFilter", "tools_system_prompt"]

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```[\w-]*\s*(.*?)\s*```$", re.DOTALL)
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")


def parse_tool_calls(text: str, tool_names: Iterable[str]) -> tuple[str, list[ToolCall]]:
    """(text left for the user, the tool calls written in it).

    Only calls of tools in ``tool_names`` count; without any, the text is returned whole.
    """
    names = set(tool_names)
    if not names:
        return text, []
    calls: list[tuple[str, dict[str, Any]]] = []
    if _OPEN in text:
        for body in _BLOCK.findall(text):
            calls.extend(_calls_in(body, names))
        if calls:
            return _BLOCK.sub("", text).strip(), _with_ids(calls)
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    candidate = fenced.group(1) if fenced else stripped
    if candidate.startswith(("{", "[")):
        calls = _calls_in(candidate, names)
        if calls:
            return "", _with_ids(calls)
    return text, []


def _with_ids(calls: list[tuple[str, dict[str, Any]]]) -> list[ToolCall]:
    return [ToolCall(f"call_{i}", name, arguments) for i, (name, arguments) in enumerate(calls)]


def _calls_in(body: str, names: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of each call of a known tool in ``body``."""
    values = _json_values(body)
    found = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item, names)
            if call:
                found.append(call)
    return found


def _json_values(body: str) -> list[Any]:
    """Every JSON value in ``body`` (objects one after another, trailing commas forgiven)."""
    body = _FENCE.sub(r"\1", body.strip())
    decoder = json.JSONDecoder()
    values: list[Any] = []
    index = 0
    while index < len(body):
        start = min((i for i in (body.find("{", index), body.find("[", index)) if i >= 0), default=-1)
        if start < 0:
            break
        try:
            value, index = decoder.raw_decode(body, start)
        except ValueError:
            try:
                value = json.loads(re.sub(r",\s*([}\]])", r"\1", body[start:]))
                index = len(body)
            except ValueError:
                index = start + 1
                continue
        values.append(value)
    return values


def _as_call(item: Any, names: set[str]) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):  # OpenAI shape written as text
        item = item["function"]
    name = item.get("name") or item.get("tool") or item.get("tool_name")
    if not isinstance(name, str) or name not in names:
        return None
    arguments: Any = next((item[k] for k in _ARGUMENT_KEYS if k in item), {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return name, arguments


class ToolCallFilter:
    """Streaming companion of :func:`parse_tool_calls`.

    ``feed(piece)`` returns the text that is safe to show now; ``finish()``
    returns ``(remaining text, tool calls)`` at the end of the answer. Text is
    held back from a ``<tool_call>`` tag on, and — only when the answer *starts*
    with ``{``, ``[`` or a code fence — until the end, since it may be a bare call.
    """

    def __init__(self, tool_names: Iterable[str]) -> None:
        self._names = set(tool_names)
        self._held = ""
        self._holding = False
        self._started = False

    def feed(self, piece: str) -> str:
        if not self._names:
            return piece
        self._held += piece
        if not self._started:
            head = self._held.lstrip()
            if not head:
                return ""
            self._started = True
            if head[0] in "{[" or head.startswith("`"):
                self._holding = True
        if self._holding:
            return ""
        position = self._held.find(_OPEN)
        if position >= 0:
            out, self._held, self._holding = self._held[:position], self._held[position:], True
            return out
        keep = _partial_tag_length(self._held)
        out = self._held[: len(self._held) - keep]
        self._held = self._held[len(out) :]
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        held, self._held = self._held, ""
        if not held:
            return "", []
        return parse_tool_calls(held, self._names)


def _partial_tag_length(text: str) -> int:
    """How many final characters could be the start of ``<tool_call>``."""
    for size in range(min(len(_OPEN) - 1, len(text)), 0, -1):
        if _OPEN.startswith(text[-size:]):
            return size
    return 0


def tools_system_prompt(tools: Iterable[dict[str, Any]]) -> str:
    """Qwen2.5's tool instructions (as its chat template writes them) for OpenAI-style specs."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )
