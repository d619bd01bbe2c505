"""The agent ⇄ app mapping on its own: which app setting each agent field sets, what a
full and a selective update change, and that fields with no equivalent come back as sent."""

from __future__ import annotations

import pytest

from openbailian.api.openapi.agent_wire import merge_unmapped, read_agent, render_agent
from openbailian.errors import InvalidParameter
from openbailian.services.apps import AppRecord, parse_config

SENT = {
    "parameters": {"temperature": 0.3, "maxTokens": 512, "dialogRound": 3, "enable_thinking": True, "topP": 0.9},
    "ragConfig": {"knowledgeBaseCodeList": ["kb1"], "topK": 2, "enableCitation": True, "answerScope": "ALL"},
    "longTermMemory": {"enable": True},
    "tools": [{"type": "file_parsing"}, {"type": "builtin:calculator"}],
    "historyConfig": {"enableRecord": True, "storeCode": "s1"},
    "workFlows": [{"type": "wf"}],
}


def test_every_mapped_field_sets_its_app_setting_and_the_rest_is_kept() -> None:
    settings = read_agent(model_id="echo", instructions="hi {{city}}", application_config=SENT,
                          sample_library={"enableSample": True}, full=True)
    config = parse_config(settings.changes)
    assert (config.model, config.instructions) == ("echo", "hi {{city}}")
    assert (config.parameters.temperature, config.parameters.max_tokens) == (0.3, 512)
    assert (config.max_history_turns, config.enable_thinking, config.memory_enabled) == (3, True, True)
    assert (config.knowledge_base_ids, config.knowledge_enabled, config.knowledge_top_k, config.show_sources) == (
        ["kb1"], True, 2, True)
    assert (config.file_parsing, config.plugin_ids) == (True, ["builtin:calculator"])
    assert settings.unmapped == {
        "applicationConfig": {
            "parameters": {"topP": 0.9}, "ragConfig": {"answerScope": "ALL"},
            "historyConfig": {"enableRecord": True, "storeCode": "s1"}, "workFlows": [{"type": "wf"}],
        },
        "sampleLibrary": {"enableSample": True},
    }
    app = AppRecord(id="a1", workspace_id="w", name="n", draft=config, published=config, published_version=1,
                    unmapped=settings.unmapped)
    rendered = render_agent(app, config)["applicationConfig"]
    for section, values in SENT.items():
        if isinstance(values, dict):
            assert rendered[section].items() >= values.items(), section
    assert sorted(t["type"] for t in rendered["tools"]) == ["builtin:calculator", "file_parsing"]
    assert rendered["workFlows"] == [{"type": "wf"}]


def test_a_selective_read_names_only_what_was_sent_and_a_full_one_resets_the_rest() -> None:
    selective = read_agent(model_id=None, instructions=None, application_config={
        "parameters": {"maxTokens": 10}, "tools": []}, full=False)
    assert selective.changes == {"parameters": {"max_tokens": 10}}  # an empty tools list: not sent
    full = read_agent(model_id=None, instructions=None, application_config={"parameters": {"maxTokens": 10}}, full=True)
    assert full.changes["parameters"] == {"max_tokens": 10} and full.changes["instructions"] == ""
    assert full.changes["knowledge_base_ids"] == [] and full.changes["memory_enabled"] is False
    assert "model" not in full.changes  # the model stays unless sent


def test_merge_lays_a_selective_update_over_the_stored_fields() -> None:
    stored = {"applicationConfig": {"historyConfig": {"enableRecord": True, "storeCode": "s1"}}}
    update = {"applicationConfig": {"historyConfig": {"storeCode": "s2"}}, "sampleLibrary": {"topK": 1}}
    assert merge_unmapped(stored, update) == {
        "applicationConfig": {"historyConfig": {"enableRecord": True, "storeCode": "s2"}},
        "sampleLibrary": {"topK": 1},
    }
    assert stored["applicationConfig"]["historyConfig"]["storeCode"] == "s1"  # not changed in place


@pytest.mark.parametrize("config, where", [
    ({"parameters": {"temperature": "hot"}}, "applicationConfig.parameters.temperature"),
    ({"ragConfig": {"topK": 0}}, "applicationConfig.ragConfig.topK"),
    ({"ragConfig": {"knowledgeBaseCodeList": "kb1"}}, "applicationConfig.ragConfig.knowledgeBaseCodeList"),
    ({"longTermMemory": {"enable": "sometimes"}}, "applicationConfig.longTermMemory.enable"),
    ({"tools": [{"type": "a"}, {"type": "a"}]}, "applicationConfig.tools"),
    ({"tools": [{"name": "a"}]}, "applicationConfig.tools.0"),
])
def test_a_wrong_value_names_its_agent_field(config, where) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameter) as caught:
        read_agent(model_id="echo", instructions=None, application_config=config, full=True)
    assert where in caught.value.message
