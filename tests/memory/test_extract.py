"""Extraction must read what small models really write, and never invent facts."""

from __future__ import annotations

import pytest

from openbailian.memory.extract import (
    Fact,
    extraction_messages,
    guess_subject,
    parse_facts,
)

MESSY = [
    ('{"facts": [{"subject": "饮食偏好", "fact": "用户饮食偏好：面食"}]}', [("用户饮食偏好：面食", "饮食偏好")]),
    ('```json\n{"facts": [{"subject": "饮食偏好", "fact": "用户喜欢面食"},]}\n```', [("用户喜欢面食", "饮食偏好")]),
    ("好的，结果如下：{“facts”：[{“subject”：“城市”，“fact”：“用户住在北京”}]} 希望有帮助", [("用户住在北京", "城市")]),
    ("{'facts': [{'subject': 'job', 'fact': 'The user is a teacher'}]}", [("The user is a teacher", "job")]),
    ("- 用户喜欢游泳\n- 用户住在上海\n", [("用户喜欢游泳", ""), ("用户住在上海", "")]),
    ("1. 用户是素食者\n2、用户养了一只猫", [("用户是素食者", ""), ("用户养了一只猫", "")]),
    ('["用户喜欢猫", "用户喜欢猫", "用户喜欢狗"]', [("用户喜欢猫", ""), ("用户喜欢狗", "")]),
    ('<think>{"facts": ["wrong"]}</think>{"facts": ["用户喜欢猫"]}', [("用户喜欢猫", "")]),
    ('{"facts": [{"subject": "饮食偏好", "fact": "用户喜欢面食"}', [("用户喜欢面食", "饮食偏好")]),
    ('{"subject": "爱好", "fact": "用户喜欢爬山"}', [("用户喜欢爬山", "爱好")]),
    ('{"memories": [{"topic": "Pet", "content": "User has a dog",}], }', [("User has a dog", "pet")]),
    ('{"facts": [{"fact": "用户饮食偏好：面食"}]}', [("用户饮食偏好：面食", "饮食偏好")]),
    ('{"facts": [{"subject": "主题", "fact": "完整的一句话"}]}', []),
    ('{"facts": []}', []),
    ("无", []),
    ("好的，我记住了。", []),
    ("", []),
    ('{"messages": [{"role": "user", "content": "用户饮食偏好：面食"}]}', []),  # the echo model
    ("{not json at all", []),
]


@pytest.mark.parametrize(("raw", "expected"), MESSY)
def test_messy_model_output_gives_the_facts_and_nothing_else(raw, expected):
    assert parse_facts(raw) == [Fact(content, subject) for content, subject in expected]


def test_an_overlong_fact_is_cut():
    (fact,) = parse_facts('{"facts": ["' + "很" * 2000 + '"]}')
    assert len(fact.content) == 500


def test_subject_from_a_colon_and_normalised():
    assert guess_subject("用户饮食偏好：面食") == "饮食偏好"
    assert guess_subject("User's City: Beijing") == "city"
    assert guess_subject("用户喜欢面食") == ""


def test_prompt_shows_known_items_and_the_exchange():
    system, user = extraction_messages("我搬到上海了", "好的", ["用户住在北京"])
    assert "JSON" in system["content"]
    assert "- 用户住在北京" in user["content"] and "我搬到上海了" in user["content"]
