"""Engine events → the DashScope wire shape, without a server."""

from __future__ import annotations

import json

from openbailian.api.completion.render import StreamRenderer, collect_response
from openbailian.engine.events import (
    DocReference,
    Finished,
    ModelUsage,
    ReasoningDelta,
    References,
    TextDelta,
    Thought,
)

REFERENCE = DocReference(index_id="kb1", doc_id="d1", doc_name="手机.docx", text="Zephyr Z9 2499元", page_number=[3])
EVENTS = [
    Thought(action_type="agentRag", observation="[1] Zephyr Z9 2499元"),
    References([REFERENCE]),
    ReasoningDelta("想"),
    ReasoningDelta("一想"),
    TextDelta("推荐"),
    TextDelta(" Z9"),
    Finished("stop", "s1", [ModelUsage("m", 10, 2)]),
]


def data(block: bytes) -> dict:
    line = [l for l in block.decode().split("\n") if l.startswith("data:")][0]
    return json.loads(line[5:])


def render(incremental: bool, has_thoughts: bool) -> list[dict]:
    renderer = StreamRenderer(request_id="r", session_id="s1", incremental=incremental, has_thoughts=has_thoughts)
    return [data(b) for e in EVENTS if (b := renderer.render(e)) is not None]


def test_incremental_stream_sends_each_thought_and_piece_once():
    outputs = [e["output"] for e in render(incremental=True, has_thoughts=True)]
    assert outputs[0]["thoughts"] == [{"action_type": "agentRag", "observation": "[1] Zephyr Z9 2499元"}]
    assert outputs[1]["doc_references"][0]["page_number"] == [3]
    assert [o["thoughts"][0]["thought"] for o in outputs[2:4]] == ["想", "一想"]
    assert [o["text"] for o in outputs[4:6]] == ["推荐", " Z9"]
    assert outputs[-1]["finish_reason"] == "stop" and outputs[-1]["doc_references"][0]["doc_id"] == "d1"


def test_cumulative_stream_repeats_everything_so_far():
    outputs = [e["output"] for e in render(incremental=False, has_thoughts=True)]
    assert outputs[3]["thoughts"] == [
        {"action_type": "agentRag", "observation": "[1] Zephyr Z9 2499元"},
        {"action_type": "reasoning", "thought": "想一想"},
    ]
    assert [o["text"] for o in outputs[4:]] == ["推荐", "推荐 Z9", "推荐 Z9"]
    assert outputs[-1]["thoughts"][1]["thought"] == "想一想"


def test_without_has_thoughts_no_thought_is_sent_but_sources_are():
    events = render(incremental=True, has_thoughts=False)
    assert all(e["output"]["thoughts"] is None for e in events)
    assert events[0]["output"]["doc_references"] is not None


async def test_json_answer_collects_everything():
    async def stream():
        for event in EVENTS:
            yield event

    body = await collect_response(stream(), request_id="r", has_thoughts=True)
    output = body["output"]
    assert output["text"] == "推荐 Z9"
    assert [t["action_type"] for t in output["thoughts"]] == ["agentRag", "reasoning"]
    assert output["doc_references"] == [{
        "index_id": "kb1", "doc_id": "d1", "doc_name": "手机.docx", "text": "Zephyr Z9 2499元", "title": "",
        "doc_url": "", "biz_id": "", "images": [], "page_number": [3],
    }]
    assert body["usage"] == {"models": [{"model_id": "m", "input_tokens": 10, "output_tokens": 2}]}
