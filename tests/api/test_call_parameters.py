"""Parameters of ``Application.call`` beyond prompt and messages, through the dashscope SDK.

``history`` (the older pair form), ``doc_tag_codes`` and the refusal of fields the
server does not act on. The app runs on the ``echo`` model, whose answer is the
JSON of the messages it was given.
"""

from __future__ import annotations

import json
from pathlib import Path

import dashscope
import pytest
from dashscope import Application

from tests.api.test_seed_knowledge import create_base, upload, write_text
from tests.support import LiveServer


@pytest.fixture
def sdk(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    return server


def echoed(response) -> list[dict]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, (response.code, response.message)
    return json.loads(response.output.text)["messages"]


HISTORY = [
    {"user": "我叫小明", "bot": "你好，小明"},
    {"user": "我住在杭州", "bot": "杭州很美"},
]


def test_history_turns_reach_the_model_in_order_before_the_prompt(sdk):
    app_id = sdk.app(instructions="你是助手")
    messages = echoed(Application.call(api_key=sdk.key(), app_id=app_id, prompt="我叫什么？", history=HISTORY))
    assert messages == [
        {"role": "system", "content": "你是助手"},
        {"role": "user", "content": "我叫小明"},
        {"role": "assistant", "content": "你好，小明"},
        {"role": "user", "content": "我住在杭州"},
        {"role": "assistant", "content": "杭州很美"},
        {"role": "user", "content": "我叫什么？"},
    ]


def test_history_wins_over_session_id_as_messages_do_and_starts_a_session(sdk):
    app_id = sdk.app()
    stored = Application.call(api_key=sdk.key(), app_id=app_id, prompt="stored turn")
    old_session = stored.output.session_id
    response = Application.call(
        api_key=sdk.key(), app_id=app_id, prompt="next", history=HISTORY[:1], session_id=old_session
    )
    messages = echoed(response)
    assert [m["content"] for m in messages] == ["我叫小明", "你好，小明", "next"]
    assert "stored turn" not in response.output.text
    new_session = response.output.session_id
    assert new_session != old_session
    # the caller's history and the new turn became the new session
    follow = echoed(Application.call(api_key=sdk.key(), app_id=app_id, prompt="again", session_id=new_session))
    assert [m["content"] for m in follow][:4] == ["我叫小明", "你好，小明", "next", response.output.text]
    # the old session is untouched
    old = echoed(Application.call(api_key=sdk.key(), app_id=app_id, prompt="old?", session_id=old_session))
    assert [m["content"] for m in old][0] == "stored turn" and "我叫小明" not in json.dumps(old, ensure_ascii=False)


@pytest.mark.parametrize(("history", "words"), [
    ([{"user": "a"}], "input.history.0.bot"),
    ([{"user": "a", "bot": "b", "extra": 1}], "input.history.0.extra"),
    ([{"user": 1, "bot": "b"}], "input.history.0.user"),
    ("a, b", "input.history"),
])
def test_malformed_history_is_refused_naming_the_turn(sdk, history, words):
    app_id = sdk.app()
    response = Application.call(api_key=sdk.key(), app_id=app_id, prompt="x", history=history)
    assert response.status_code == 400 and response.code == "InvalidParameter"
    assert words in response.message


def test_history_with_messages_is_refused_over_raw_http(server):
    # The SDK never sends both; a raw client that does gets told, not a silent pick.
    app_id = server.app()
    response = server.call(app_id, {"input": {
        "messages": [{"role": "user", "content": "a"}], "history": HISTORY,
    }})
    assert response.status_code == 400
    assert "input.history" in response.json()["message"] and "messages" in response.json()["message"]


def test_history_without_a_prompt_is_refused(server):
    app_id = server.app()
    response = server.call(app_id, {"input": {"history": HISTORY}})
    assert response.status_code == 400 and "last message must be a user message" in response.json()["message"].lower()


def test_doc_tag_codes_narrow_retrieval_and_join_rag_options_tags(sdk, tmp_path: Path):
    index_id = create_base(sdk, "catalogue")
    upload(sdk, index_id, write_text(tmp_path, "云帆.txt", "云帆 Y5 手机，参考售价1899元。"), tags=["budget"])
    upload(sdk, index_id, write_text(tmp_path, "星河.txt", "星河 Nova 3 手机，参考售价1999元。"), tags=["nova"])
    upload(sdk, index_id, write_text(tmp_path, "星尘.txt", "星尘 S9 手机，参考售价5999元。"), tags=["flagship"])
    app_id = sdk.app(knowledge_enabled=True, knowledge_base_ids=[index_id], show_sources=True)
    question = "推荐一款手机"

    def names(**kwargs) -> set[str]:  # type: ignore[no-untyped-def]
        response = Application.call(api_key=sdk.key(), app_id=app_id, prompt=question, **kwargs)
        assert response.status_code == 200, response.message
        return {r.doc_name for r in response.output.doc_references or []}

    assert names() == {"云帆.txt", "星河.txt", "星尘.txt"}
    assert names(doc_tag_codes=["budget"]) == {"云帆.txt"}
    # joined with rag_options.tags: a document with either tag is searched
    assert names(doc_tag_codes=["budget"], rag_options={"tags": ["nova"]}) == {"云帆.txt", "星河.txt"}
    assert names(doc_tag_codes=["no-such-tag"]) == set()


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"flow_stream_mode": "agent_format"}, "parameters.flow_stream_mode"),
    ({"enable_web_search": True}, "parameters.enable_web_search"),
    ({"biz_params": {"city": "北京"}}, "input.biz_params.city"),
])
def test_fields_the_server_does_not_act_on_are_refused_by_name(sdk, kwargs, words):
    app_id = sdk.app()
    response = Application.call(api_key=sdk.key(), app_id=app_id, prompt="x", **kwargs)
    assert response.status_code == 400 and response.code == "InvalidParameter"
    assert words in response.message and "refused" in response.message


@pytest.mark.parametrize(("body", "words"), [
    ({"input": {"prompt": "x", "query": "y"}}, "input.query"),
    ({"input": {"prompt": "x"}, "model": "qwen-max"}, "model"),
    ({"input": {"prompt": "x"}, "debug": {"trace": True}}, "debug"),
    ({"input": {"prompt": "x"}, "resources": {}}, "resources"),
    ({"input": {"messages": [{"role": "user", "content": "x", "name": "u"}]}}, "input.messages.0.name"),
])
def test_unknown_fields_of_a_raw_body_are_refused(server, body, words):
    app_id = server.app()
    response = server.call(app_id, body)
    assert response.status_code == 400 and response.json()["code"] == "InvalidParameter"
    assert words in response.json()["message"]


def test_what_bailian_clients_send_is_accepted(server):
    app_id = server.app()
    response = server.call(app_id, {"model": "", "input": {"prompt": "x"}, "parameters": {}, "debug": {}})
    assert response.status_code == 200, response.text
