"""Streamed OpenAI-style chunks and inline <think> blocks → answer text, thinking, tool calls."""

from __future__ import annotations

from openbailian.providers.base import ToolCall
from openbailian.providers.chat_chunks import ChatChunkDecoder
from openbailian.providers.thinking import ThinkTagSplitter


def feed_all(splitter: ThinkTagSplitter, pieces: list[str]) -> tuple[str, str]:
    reasoning, text = "", ""
    for piece in pieces:
        r, t = splitter.feed(piece)
        reasoning, text = reasoning + r, text + t
    r, t = splitter.flush()
    return reasoning + r, text + t


def test_think_tags_split_across_pieces():
    pieces = ["<thi", "nk>let me ", "think</th", "ink>\n\nThe answer", " is 4."]
    assert feed_all(ThinkTagSplitter(), pieces) == ("let me think", "The answer is 4.")


def test_text_without_tags_passes_at_once_except_a_possible_tag_start():
    splitter = ThinkTagSplitter()
    assert splitter.feed("a < b and c <") == ("", "a < b and c ")
    assert splitter.flush() == ("", "<")


def chunk(**delta) -> dict:
    return {"choices": [{"delta": delta}]}


def test_decoder_maps_reasoning_content_text_and_usage():
    decoder = ChatChunkDecoder()
    assert decoder.feed(chunk(role="assistant")) is None
    first = decoder.feed(chunk(reasoning_content="thinking…"))
    second = decoder.feed(chunk(content="<think>more</think>Hi"))
    decoder.feed({"choices": [{"delta": {}, "finish_reason": "length"}]})
    decoder.feed({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    last = decoder.finish()
    assert (first.reasoning, first.text) == ("thinking…", "")
    assert (second.reasoning, second.text) == ("more", "Hi")
    assert (last.finish_reason, last.input_tokens, last.output_tokens) == ("length", 7, 3)


def test_decoder_joins_tool_call_fragments_by_index():
    decoder = ChatChunkDecoder()
    decoder.feed(chunk(tool_calls=[{"index": 0, "id": "call_a", "function": {"name": "weather", "arguments": '{"ci'}}]))
    decoder.feed(chunk(tool_calls=[{"index": 1, "function": {"name": "calc", "arguments": "{}"}}]))
    decoder.feed(chunk(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": 'ty": "北京"}'}}]))
    decoder.feed(chunk(tool_calls=[{"index": 1, "function": {"arguments": "not json"}}]))
    last = decoder.finish()
    assert last.finish_reason == "tool_calls"
    assert last.tool_calls == [
        ToolCall("call_a", "weather", {"city": "北京"}),
        ToolCall("call_1", "calc", {"_raw": "{}not json"}),
    ]
