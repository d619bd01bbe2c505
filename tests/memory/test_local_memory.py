"""The seed's long-term memory example on the bundled local model (Qwen2.5-Coder-0.5B),
with extraction done by the app's own model, plus the extraction-prompt behaviour that
makes a small model usable as the extractor."""

from __future__ import annotations

import time

import dashscope
import pytest
from dashscope import Application

from openbailian.memory.extract import Fact, extraction_messages, parse_facts
from tests.support import LOCAL_MODEL_BUDGET

# ---------------------------------------------------------------- the prompt (fast)


def test_the_extractor_sees_what_the_user_said_not_the_reply():
    reply = "面食是一种非常受欢迎的饮食方式，它不仅能够提供丰富的营养。"
    system, user = extraction_messages("用户饮食偏好：面食", reply, ["用户住在北京"])
    assert "用户：用户饮食偏好：面食" in user["content"]
    assert "- 用户住在北京" in user["content"]
    assert "受欢迎" not in system["content"] + user["content"]


def test_a_bare_value_is_stored_with_its_subject():
    raw = ('{"facts": [{"subject": "居住城市", "fact": "杭州"}, {"subject": "job", "fact": "teacher"},'
           ' {"subject": "饮食偏好", "fact": "用户饮食偏好：面食"}, {"subject": "爱好", "fact": "用户喜欢爬山"}]}')
    assert parse_facts(raw) == [
        Fact("居住城市：杭州", "居住城市"),
        Fact("job: teacher", "job"),
        Fact("用户饮食偏好：面食", "饮食偏好"),
        Fact("用户喜欢爬山", "爱好"),
    ]


def test_the_prompts_format_placeholder_is_not_a_fact():
    assert parse_facts('{"facts": [{"subject": "主题", "fact": "一句简短的话"}]}') == []


# ---------------------------------------------------------------- the seed's flow (slow)

NOODLES = "面"  # 面食, 面条, 拉面, 炸酱面, 担担面, 刀削面 …


@pytest.fixture
def sdk(local_server, monkeypatch):
    monkeypatch.setattr(dashscope, "base_http_api_url", local_server.base_http_api_url)
    return local_server


def items_of(server, memory_id: str) -> list[str]:
    response = server.http.get(f"/manage/v1/memories/{memory_id}/nodes", headers=server.auth())
    assert response.status_code == 200, response.text
    return [item["content"] for item in response.json()["items"]]


@pytest.mark.slow
def test_seed_memory_flow_on_the_local_model(sdk):
    server = sdk
    app_id = server.app(
        model="local",
        instructions="You are a helpful assistant.",
        memory_enabled=True,
        parameters={"temperature": 0, "seed": 1, "max_tokens": 200},
    )
    created = server.http.post("/manage/v1/memories", json={}, headers=server.auth())
    memory_id = created.json()["memory_id"]

    saved = Application.call(request_timeout=LOCAL_MODEL_BUDGET, api_key=server.key(), app_id=app_id, prompt="用户饮食偏好：面食", memory_id=memory_id)
    assert saved.status_code == 200, saved.message

    # Extraction runs after the answer, on the same model; bounded so a stuck model fails the test.
    deadline = time.monotonic() + LOCAL_MODEL_BUDGET
    while not (items := items_of(server, memory_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert any("面食" in item for item in items), items
    # A fact about the user, not the model's essay copied back.
    assert all(len(item) <= 60 for item in items), items

    recalled = Application.call(request_timeout=LOCAL_MODEL_BUDGET, api_key=server.key(), app_id=app_id, prompt="美食推荐", memory_id=memory_id)
    assert recalled.status_code == 200, recalled.message
    assert recalled.output.session_id != saved.output.session_id
    assert NOODLES in recalled.output.text, recalled.output.text
