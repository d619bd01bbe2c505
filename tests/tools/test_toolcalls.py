"""Reading tool calls from the text a local Qwen model writes."""

from __future__ import annotations

import pytest

from openbailian.providers.base import ToolCall
from openbailian.providers.toolcalls import (
    ToolCallFilter,
    parse_tool_calls,
    tools_system_prompt,
)

NAMES = {"get_weather", "calculator"}
WEATHER = {"name": "get_weather", "arguments": {"city": "北京"}}


@pytest.mark.parametrize(
    ("text", "rest", "calls"),
    [
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>', "", [WEATHER]),
        ('好的。<tool_call>{"name": "get_weather", "arguments": {"city": "北京"}}', "好的。", [WEATHER]),
        ('<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"北京\\"}"}</tool_call>', "", [WEATHER]),
        ('<tool_call>{"name": "get_weather", "arguments": {"city": "北京"},}</tool_call>', "", [WEATHER]),
        ('```json\n{"name": "get_weather", "parameters": {"city": "北京"}}\n```', "", [WEATHER]),
        ('{"name": "get_weather", "arguments": {"city": "北京"}}', "", [WEATHER]),
        ('[{"name": "get_weather", "arguments": {"city": "北京"}}, {"name": "calculator", "arguments": {"expression": "1+1"}}]',
         "", [WEATHER, {"name": "calculator", "arguments": {"expression": "1+1"}}]),
        ('{"name": "rm", "arguments": {}}', '{"name": "rm", "arguments": {}}', []),  # not a known tool
        ('{"answer": 42}', '{"answer": 42}', []),
        ("北京今天晴。", "北京今天晴。", []),
        ("<tool_call>garbage</tool_call>", "<tool_call>garbage</tool_call>", []),
    ],
)
def test_parse(text, rest, calls):
    remaining, found = parse_tool_calls(text, NAMES)
    assert remaining == rest
    assert all(isinstance(c, ToolCall) for c in found)
    assert [{"name": c.name, "arguments": c.arguments} for c in found] == calls
    assert len({c.id for c in found}) == len(found) and all(c.id for c in found)


def test_without_tools_nothing_is_parsed():
    text = '{"name": "get_weather", "arguments": {}}'
    assert parse_tool_calls(text, []) == (text, [])


def feed_all(pieces, names=NAMES):
    stream = ToolCallFilter(names)
    shown = "".join(stream.feed(p) for p in pieces)
    rest, calls = stream.finish()
    return shown, rest, calls


def test_filter_streams_plain_text_at_once():
    stream = ToolCallFilter(NAMES)
    assert stream.feed("北京") == "北京"
    assert stream.feed("今天晴<") == "今天晴"  # "<" may start a tag: held
    assert stream.feed("b>。") == "<b>。"
    assert stream.finish() == ("", [])


def test_filter_holds_back_a_tool_call_split_in_pieces():
    text = '我查一下。<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>'
    shown, rest, calls = feed_all([text[i : i + 3] for i in range(0, len(text), 3)])
    assert shown == "我查一下。" and rest == ""
    assert [c.name for c in calls] == ["get_weather"]


def test_filter_holds_a_leading_json_object_until_the_end():
    shown, rest, calls = feed_all(['{"name": "calc', 'ulator", "arguments": {"expression": "2*3"}}'])
    assert shown == "" and calls[0].arguments == {"expression": "2*3"}
    shown, rest, calls = feed_all(['{"answer"', ": 42}"])
    assert (shown, rest, calls) == ("", '{"answer": 42}', [])  # not a call: given back whole


def test_qwen_system_prompt_lists_the_tools():
    prompt = tools_system_prompt([{"type": "function", "function": {"name": "get_weather"}}])
    assert "<tools>" in prompt and "get_weather" in prompt and "<tool_call>" in prompt
