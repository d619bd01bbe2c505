"""Building the model's context: variables, the system message, trimming."""

from __future__ import annotations

import pytest

from openbailian.engine.app_config import AppConfig, PromptVariable
from openbailian.engine.context import (
    fill_variables,
    split_turns,
    system_message,
    trim_history,
)
from openbailian.errors import InvalidParameter
from openbailian.providers.echo import EchoProvider


def test_variables_use_call_values_then_defaults():
    config = AppConfig(
        model="echo",
        instructions="{{city}} / {{ tone }} / {{city}}",
        variables=[PromptVariable(name="tone", default="友好")],
    )
    assert fill_variables(config, {"city": "杭州"}) == "杭州 / 友好 / 杭州"
    assert fill_variables(config, {"city": 3, "tone": 1.5}) == "3 / 1.5 / 3"


@pytest.mark.parametrize("value", [None, True, ["x"], {"a": 1}])
def test_a_variable_must_be_text_or_a_number(value):
    config = AppConfig(model="echo", instructions="{{city}}")
    with pytest.raises(InvalidParameter, match="user_prompt_params.city"):
        fill_variables(config, {"city": value})


def test_missing_variables_are_named():
    config = AppConfig(model="echo", instructions="{{a}} {{b}} {{c}}", variables=[PromptVariable(name="b", default="")])
    with pytest.raises(InvalidParameter, match="'a', 'c'"):
        fill_variables(config, {})


def test_duplicate_variable_declarations_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        AppConfig(model="echo", variables=[PromptVariable(name="x"), PromptVariable(name="x")])


def test_one_system_message_joins_app_caller_and_data():
    assert system_message("", []) == []
    assert system_message("rules", ["caller"], ["<knowledge>…</knowledge>"]) == [
        {"role": "system", "content": "rules\n\ncaller\n\n<knowledge>…</knowledge>"}
    ]


def test_turns_start_at_user_messages():
    history = [
        {"role": "user", "content": "1"}, {"role": "assistant", "content": "a"},
        {"role": "user", "content": "2"}, {"role": "user", "content": "3"}, {"role": "assistant", "content": "c"},
    ]
    assert [len(t) for t in split_turns(history)] == [2, 1, 2]


async def test_trimming_drops_whole_oldest_turns_until_it_fits():
    provider = EchoProvider(context_length=60)
    history = []
    for n in range(5):
        history += [{"role": "user", "content": f"question {n} " * 3}, {"role": "assistant", "content": "answer " * 3}]
    current = [{"role": "user", "content": "now"}]
    messages = await trim_history(provider, [], history, current, max_turns=10, reserve_tokens=10)
    assert messages[-1] == current[0]
    assert messages[0]["role"] == "user", "a turn is never cut in half"
    assert await provider.count_tokens(messages) <= 50
    assert len(messages) < len(history) + 1
    kept = await trim_history(provider, [], history, current, max_turns=1, reserve_tokens=0)
    assert kept[0]["content"].startswith("question 4")


async def test_trimming_fails_when_the_new_turn_alone_is_too_long():
    provider = EchoProvider(context_length=20)
    with pytest.raises(InvalidParameter, match="too long"):
        await trim_history(provider, [], [], [{"role": "user", "content": "word " * 50}], max_turns=5, reserve_tokens=5)
