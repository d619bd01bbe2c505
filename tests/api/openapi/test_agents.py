"""The agents family through the official SDK (unmodified), signed and with a bearer token:
an agent is an app whose code is the ``app_id`` of ``dashscope.Application.call``; its
settings reach the calls (instructions with a variable, thinking, knowledge top-k and
citations, long-term memory, generation parameters); fields with no app equivalent come
back as sent; bad input answers in the agents envelope and changes nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dashscope
import pytest
from alibabacloud_bailian20231229 import models
from alibabacloud_bailian20231229.client import Client
from alibabacloud_tea_openapi import utils_models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException
from darabonba.runtime import RuntimeOptions
from dashscope import Application

from openbailian.providers.echo import EchoProvider
from tests.api.openapi.conftest import WORKSPACE, OpenApi, create_key
from tests.support import LiveServer

Config = models.CreateAndPulishAgentRequestApplicationConfig
Parameters = models.CreateAndPulishAgentRequestApplicationConfigParameters
Rag = models.CreateAndPulishAgentRequestApplicationConfigRagConfig
Memory = models.CreateAndPulishAgentRequestApplicationConfigLongTermMemory
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
DONE = {"FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED"}
GUIDE = "\n\n".join(
    f"# 杭州美食 第{n}篇\n\n杭州美食推荐{n}：{dish}是杭州的名菜，游客到杭州一定要尝一尝{dish}。"
    for n, dish in enumerate(["西湖醋鱼", "东坡肉", "龙井虾仁", "叫花鸡"], start=1)
)


class RecordingEcho(EchoProvider):
    """The echo model (its answer shows the messages it was given) that also keeps the
    generation options of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.options: list[Any] = []

    async def stream(self, messages, options) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def,override]
        self.options.append(options)
        async for chunk in super().stream(messages, options):
            yield chunk


@pytest.fixture
def echo(openapi: OpenApi) -> RecordingEcho:
    model = RecordingEcho()
    openapi.server.runtime.models.register("echo", model)
    return model


@pytest.fixture
def calls(openapi: OpenApi, monkeypatch: pytest.MonkeyPatch) -> OpenApi:
    monkeypatch.setattr(dashscope, "base_http_api_url", openapi.server.base_http_api_url)
    return openapi


def refused(call, status: int, code: str, mentions: str = "") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientException) as caught:
        call()
    error = caught.value
    assert (error.status_code, error.code) == (status, code), error.data
    body = error.data
    # the agents envelope, with the upper-case names every SDK reads first
    assert body["success"] is False and body["httpStatusCode"] == str(status) and body["data"] is None
    assert body["requestId"] and body["RequestId"] == body["requestId"] and body["Code"] == code
    assert mentions in body["message"], body
    return body


def knowledge_base(server: LiveServer, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A base of the test workspace holding the four-section guide, ingested."""
    auth = server.auth(WORKSPACE)
    base = server.http.post("/manage/v1/knowledge/bases", json={"name": "guide", "kind": "unstructured"}, headers=auth)
    assert base.status_code == 201, base.text
    index_id = base.json()["index_id"]
    uploaded = server.http.post(
        f"/manage/v1/knowledge/bases/{index_id}/files",
        files=[("files", ("杭州美食.md", GUIDE.encode()))], headers=auth,
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["files"][0]["file_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = server.http.get(f"/manage/v1/knowledge/files/{file_id}", headers=auth).json()["status"]
        if status in DONE:
            assert status == "FILE_IS_READY"
            return index_id
        time.sleep(0.05)
    raise AssertionError("the guide was never ingested")


def call(openapi: OpenApi, app_id: str, **kwargs: Any) -> Any:
    response = Application.call(api_key=openapi.credentials["api_key"], app_id=app_id, **kwargs)
    assert response.status_code == 200, (response.code, response.message)
    return response


def system_message(response: Any) -> str:
    messages = json.loads(response.output.text)["messages"]
    assert messages[0]["role"] == "system"
    return messages[0]["content"]


def raw_agent(openapi: OpenApi, app_id: str) -> dict[str, Any]:
    """GetPublishedAgent's ``data`` as sent (the SDK's model drops fields it does not know)."""
    response = openapi.server.http.get(
        f"/{WORKSPACE}/application/agents/{app_id}",
        headers={"x-acs-bearer-token": openapi.credentials["api_key"], "x-acs-signature-type": "BEARERTOKEN"},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def create(sdk: Client, **fields: Any) -> str:
    request = models.CreateAndPulishAgentRequest(**{"name": "美食顾问", "model_id": "echo", **fields})
    body = sdk.create_and_pulish_agent(WORKSPACE, request).body
    assert body.success is True and body.code == "Success" and body.http_status_code == "200"
    assert re.fullmatch(r"[0-9a-f]{32}", body.data)
    return body.data


def test_an_agent_is_an_app_whose_settings_reach_the_call(sdk: Client, calls: OpenApi, echo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    index_id = knowledge_base(calls.server, tmp_path)
    memory_id = sdk.create_memory(WORKSPACE, models.CreateMemoryRequest(description="口味")).body.memory_id
    sdk.create_memory_node(WORKSPACE, memory_id, models.CreateMemoryNodeRequest(content="用户不吃辣"))
    app_id = create(
        sdk,
        instructions="请给出{{city}}的三种美食推荐",
        application_config=Config(
            parameters=Parameters(temperature=0.3, max_tokens=512, dialog_round=3, enable_thinking=True),
            rag_config=Rag(knowledge_base_code_list=[index_id], top_k=1, enable_citation=True, answer_scope="ALL"),
            long_term_memory=Memory(enable=True),
            history_config=models.CreateAndPulishAgentRequestApplicationConfigHistoryConfig(
                enable_record=True, store_code="store-1"
            ),
            security_config=models.CreateAndPulishAgentRequestApplicationConfigSecurityConfig(
                processing_strategy="block"
            ),
        ),
        sample_library=models.CreateAndPulishAgentRequestSampleLibrary(
            enable_sample=True, sample_library_id_list=["lib-1"], top_k=2
        ),
    )

    response = call(
        calls, app_id, prompt="杭州美食推荐", has_thoughts=True, memory_id=memory_id,
        biz_params={"user_prompt_params": {"city": "杭州"}},
    )
    system = system_message(response)
    assert system.startswith("请给出杭州的三种美食推荐")  # instructions, variable filled
    assert "用户不吃辣" in system  # long-term memory on: the memory's fact is recalled
    assert len(response.output.doc_references) == 1  # topK 1, enableCitation on
    assert "杭州美食推荐" in response.output.doc_references[0].text
    actions = [t.action_type if hasattr(t, "action_type") else t["action_type"] for t in response.output.thoughts]
    assert "reasoning" in actions  # enable_thinking on
    options = echo.options[-1]
    assert (options.temperature, options.max_tokens, options.enable_thinking) == (0.3, 512, True)

    got = sdk.get_published_agent(WORKSPACE, app_id, models.GetPublishedAgentRequest()).body
    assert got.success is True and got.http_status_code == "200"
    data = got.data
    assert (data.name, data.model_id, data.instructions) == ("美食顾问", "echo", "请给出{{city}}的三种美食推荐")
    config = data.application_config
    assert (config.parameters.temperature, config.parameters.max_tokens, config.parameters.dialog_round) == (0.3, 512, 3)
    assert (config.rag_config.knowledge_base_code_list, config.rag_config.top_k) == ([index_id], 1)
    assert config.rag_config.enable_citation is True and config.rag_config.enable_search is True
    assert config.long_term_memory.enable is True
    # fields with no app equivalent: kept and returned as sent
    assert (config.history_config.enable_record, config.history_config.store_code) == (True, "store-1")
    assert config.security.processing_strategy == "block"
    raw = raw_agent(calls, app_id)
    assert raw["code"] == app_id and raw["applicationConfig"]["parameters"]["enable_thinking"] is True
    assert raw["applicationConfig"]["ragConfig"]["answerScope"] == "ALL"
    assert raw["sampleLibrary"] == {"enableSample": True, "sampleLibraryIdList": ["lib-1"], "topK": 2}

    # a setting no agent field reaches (top_p, set from the management API) survives both updates
    patched = calls.server.http.patch(
        f"/manage/v1/apps/{app_id}", json={"parameters": {"temperature": 0.3, "max_tokens": 512, "top_p": 0.5}},
        headers=calls.server.auth(WORKSPACE),
    )
    assert patched.status_code == 200, patched.text
    # a full update: what it leaves out goes back to the default
    sdk.update_and_publish_agent(WORKSPACE, app_id, models.UpdateAndPublishAgentRequest(
        instructions="只谈{{city}}的天气",
        application_config=models.UpdateAndPublishAgentRequestApplicationConfig(
            parameters=models.UpdateAndPublishAgentRequestApplicationConfigParameters(temperature=1.0),
        ),
    ))
    config = sdk.get_published_agent(WORKSPACE, app_id, models.GetPublishedAgentRequest()).body.data.application_config
    assert (config.parameters.temperature, config.parameters.max_tokens, config.parameters.dialog_round) == (1.0, None, None)
    assert config.rag_config.knowledge_base_code_list == [] and config.long_term_memory.enable is False
    assert config.history_config is None
    response = call(calls, app_id, prompt="天气", biz_params={"user_prompt_params": {"city": "北京"}}, memory_id=memory_id)
    system = system_message(response)
    assert system.startswith("只谈北京的天气") and "用户不吃辣" not in system  # memory now off
    assert response.output.doc_references in (None, [])
    assert (echo.options[-1].enable_thinking, echo.options[-1].top_p) == (False, 0.5)

    # a selective update changes what it names, and only that
    sdk.update_and_publish_agent_selective(WORKSPACE, app_id, models.UpdateAndPublishAgentSelectiveRequest(
        name="天气顾问",
        application_config=models.UpdateAndPublishAgentSelectiveRequestApplicationConfig(
            parameters=models.UpdateAndPublishAgentSelectiveRequestApplicationConfigParameters(max_tokens=64),
            rag_config=models.UpdateAndPublishAgentSelectiveRequestApplicationConfigRagConfig(
                knowledge_base_code_list=[index_id], top_k=3, enable_citation=True,
            ),
        ),
    ))
    data = sdk.get_published_agent(WORKSPACE, app_id, models.GetPublishedAgentRequest()).body.data
    assert (data.name, data.instructions) == ("天气顾问", "只谈{{city}}的天气")
    assert (data.application_config.parameters.temperature, data.application_config.parameters.max_tokens) == (1.0, 64)
    response = call(calls, app_id, prompt="杭州美食推荐", biz_params={"user_prompt_params": {"city": "杭州"}})
    assert len(response.output.doc_references) == 3  # topK 3 now
    assert (echo.options[-1].temperature, echo.options[-1].max_tokens, echo.options[-1].top_p) == (1.0, 64, 0.5)

    # the same app from the management API
    managed = calls.server.http.get(f"/manage/v1/apps/{app_id}", headers=calls.server.auth(WORKSPACE)).json()
    assert managed["published"]["knowledge_top_k"] == 3 and managed["name"] == "天气顾问"

    deleted = sdk.delete_agent(WORKSPACE, app_id, models.DeleteAgentRequest()).body
    assert deleted.success is True and deleted.data == app_id
    refused(lambda: sdk.get_published_agent(WORKSPACE, app_id, models.GetPublishedAgentRequest()),
            404, "AppNotFound", app_id)
    gone = Application.call(api_key=calls.credentials["api_key"], app_id=app_id, prompt="你好")
    assert (gone.status_code, gone.code) == (404, "AppNotFound")


def test_list_pages_through_every_published_agent_once(openapi: OpenApi) -> None:
    sdk = openapi.signed
    made = [create(sdk, name=f"agent-{n}", instructions=f"第{n}个") for n in range(5)]
    draft = openapi.server.app(workspace=WORKSPACE, name="draft", publish=False)  # not published: not listed
    seen: list[str] = []
    for page_no in (1, 2, 3):
        body = sdk.list_published_agent(WORKSPACE, models.ListPublishedAgentRequest(page_no=page_no, page_size=2)).body
        assert body.success is True and (body.data.page_no, body.data.page_size, body.data.total) == (page_no, 2, 5)
        seen += [item.name for item in body.data.list]
        assert len(body.data.list) == (2 if page_no < 3 else 1)
    assert seen == [f"agent-{n}" for n in range(5)]
    assert {item.instructions for item in sdk.list_published_agent(
        WORKSPACE, models.ListPublishedAgentRequest(page_no=1, page_size=10)).body.data.list} == {f"第{n}个" for n in range(5)}
    assert draft not in made


def _raw_create(client: Client, body: dict[str, str]) -> Any:
    """CreateAndPulishAgent through the SDK's own generic call, with form values as given."""
    params = open_api_models.Params(
        action="CreateAndPulishAgent", version="2023-12-29", protocol="HTTPS",
        pathname=f"/{WORKSPACE}/application/agents", method="POST", auth_type="AK", style="ROA",
        req_body_type="formData", body_type="json",
    )
    return client.call_api(params, open_api_models.OpenApiRequest(body=body), RuntimeOptions())


def agent_count(sdk: Client) -> int:
    return sdk.list_published_agent(WORKSPACE, models.ListPublishedAgentRequest(page_size=100)).body.data.total


def test_bad_input_answers_in_the_agents_envelope_and_changes_nothing(openapi: OpenApi) -> None:
    sdk = openapi.signed
    app_id = create(sdk, instructions="原来的", application_config=Config(parameters=Parameters(temperature=0.5)))
    before = agent_count(sdk)

    def create_with(**fields: Any):  # type: ignore[no-untyped-def]
        return lambda: sdk.create_and_pulish_agent(WORKSPACE, models.CreateAndPulishAgentRequest(**fields))

    refused(create_with(name="x"), 400, "InvalidParameter", "modelId")
    refused(create_with(model_id="echo"), 400, "InvalidParameter", "name")
    refused(create_with(name="x", model_id="no-such-model"), 400, "InvalidParameter.Model", "no-such-model")
    refused(create_with(name="x" * 201, model_id="echo"), 400, "InvalidParameter", "name")
    refused(create_with(name="x", model_id="echo", application_config=Config(parameters=Parameters(temperature="hot"))),
            400, "InvalidParameter", "applicationConfig.parameters.temperature")
    refused(create_with(name="x", model_id="echo", application_config=Config(parameters=Parameters(temperature=5))),
            400, "InvalidParameter", "applicationConfig.parameters.temperature")
    refused(create_with(name="x", model_id="echo", application_config=Config(rag_config=Rag(top_k="many"))),
            400, "InvalidParameter", "applicationConfig.ragConfig.topK")
    refused(create_with(name="x", model_id="echo", application_config=Config(rag_config=Rag(knowledge_base_code_list=["nope"]))),
            404, "Index.NotFound", "nope")
    refused(create_with(name="x", model_id="echo", application_config=Config(
        tools=[models.CreateAndPulishAgentRequestApplicationConfigTools(type="builtin:nope")])),
        400, "InvalidParameter", "builtin:nope")
    refused(lambda: _raw_create(sdk, {"name": "x", "modelId": "echo", "applicationConfig": "{not json"}),
            400, "InvalidParameter", "applicationConfig")
    refused(lambda: _raw_create(sdk, {"name": "x", "modelId": "echo", "applicationConfig": "[1, 2]"}),
            400, "InvalidParameter", "applicationConfig")
    assert agent_count(sdk) == before

    # unknown ids
    for operation in (
        lambda: sdk.get_published_agent(WORKSPACE, "nope", models.GetPublishedAgentRequest()),
        lambda: sdk.update_and_publish_agent(WORKSPACE, "nope", models.UpdateAndPublishAgentRequest(instructions="x")),
        lambda: sdk.update_and_publish_agent_selective(WORKSPACE, "nope", models.UpdateAndPublishAgentSelectiveRequest(name="x")),
        lambda: sdk.delete_agent(WORKSPACE, "nope", models.DeleteAgentRequest()),
    ):
        refused(operation, 404, "AppNotFound", "nope")

    # a bad update leaves the agent as it was
    refused(lambda: sdk.update_and_publish_agent_selective(WORKSPACE, app_id, models.UpdateAndPublishAgentSelectiveRequest(
        instructions="新的", model_id="no-such-model")), 400, "InvalidParameter.Model")
    refused(lambda: sdk.update_and_publish_agent(WORKSPACE, app_id, models.UpdateAndPublishAgentRequest(
        instructions="新的", application_config=models.UpdateAndPublishAgentRequestApplicationConfig(
            parameters=models.UpdateAndPublishAgentRequestApplicationConfigParameters(max_tokens=0)))),
        400, "InvalidParameter", "maxTokens")
    data = sdk.get_published_agent(WORKSPACE, app_id, models.GetPublishedAgentRequest()).body.data
    assert (data.instructions, data.application_config.parameters.temperature) == ("原来的", 0.5)
    refused(lambda: sdk.list_published_agent(WORKSPACE, models.ListPublishedAgentRequest(page_no=0)),
            400, "InvalidParameter", "pageNo")

    # another workspace's agent: refused, and left as it was
    other = openapi.client(credentials=create_key(openapi.server, "ws-other"))
    theirs = other.create_and_pulish_agent("ws-other", models.CreateAndPulishAgentRequest(
        name="theirs", model_id="echo", instructions="他们的")).body.data
    for operation in (
        lambda: sdk.get_published_agent(WORKSPACE, theirs, models.GetPublishedAgentRequest()),
        lambda: sdk.update_and_publish_agent(WORKSPACE, theirs, models.UpdateAndPublishAgentRequest(instructions="x")),
        lambda: sdk.update_and_publish_agent_selective(WORKSPACE, theirs, models.UpdateAndPublishAgentSelectiveRequest(name="x")),
        lambda: sdk.delete_agent(WORKSPACE, theirs, models.DeleteAgentRequest()),
    ):
        refused(operation, 404, "AppNotFound", theirs)  # exactly as if it did not exist
    kept = other.get_published_agent("ws-other", theirs, models.GetPublishedAgentRequest()).body.data
    assert (kept.name, kept.instructions) == ("theirs", "他们的")
    assert agent_count(sdk) == before


def test_the_agent_example_runs_unchanged(openapi: OpenApi) -> None:
    """examples/openapi_agent.py, unchanged, with only its environment set."""
    server = openapi.server
    env = {
        **os.environ,
        "BAILIAN_ENDPOINT": f"127.0.0.1:{server.port}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": openapi.credentials["access_key_id"],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": openapi.credentials["access_key_secret"],
        "BAILIAN_WORKSPACE_ID": WORKSPACE,
        "BAILIAN_MODEL_ID": "echo",
        "DASHSCOPE_API_KEY": openapi.credentials["api_key"],
        "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "openapi_agent.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert "code" not in lines, result.stdout
    assert "name=美食顾问 model=echo temperature=0.3" in result.stdout.splitlines()
    messages = json.loads(lines["text"])["messages"]
    assert messages[0] == {"role": "system", "content": "请给出杭州的三种美食推荐，只显示美食名称，逗号隔开。"}
    assert messages[-1] == {"role": "user", "content": "美食推荐"}
    managed = server.http.get(f"/manage/v1/apps/{lines['app_id']}", headers=server.auth(WORKSPACE)).json()
    assert managed["published"]["parameters"]["max_tokens"] == 256


def test_tools_are_the_apps_plugins_and_file_parsing_switch(calls: OpenApi) -> None:
    sdk = calls.signed
    Tool = models.CreateAndPulishAgentRequestApplicationConfigTools
    app_id = create(sdk, application_config=Config(tools=[Tool(type="builtin:calculator"), Tool(type="file_parsing")]))
    managed = calls.server.http.get(f"/manage/v1/apps/{app_id}", headers=calls.server.auth(WORKSPACE)).json()
    assert managed["published"]["plugin_ids"] == ["builtin:calculator"] and managed["published"]["file_parsing"] is True
    tools = sdk.get_published_agent(WORKSPACE, app_id, models.GetPublishedAgentRequest()).body.data.application_config.tools
    assert sorted(t.type for t in tools) == ["builtin:calculator", "file_parsing"]

    response = call(calls, app_id, prompt='#call calculator {"expression": "6*7"}', has_thoughts=True)
    api = [t for t in response.output.thoughts if t["action_type"] == "api"]
    assert len(api) == 1 and api[0]["action"] == "calculator" and "42" in api[0]["observation"]

    # the Python SDK sends "tools": [] with every applicationConfig: a selective update keeps the tools
    sdk.update_and_publish_agent_selective(WORKSPACE, app_id, models.UpdateAndPublishAgentSelectiveRequest(
        application_config=models.UpdateAndPublishAgentSelectiveRequestApplicationConfig(
            parameters=models.UpdateAndPublishAgentSelectiveRequestApplicationConfigParameters(temperature=0.1))))
    tools = sdk.get_published_agent(WORKSPACE, app_id, models.GetPublishedAgentRequest()).body.data.application_config.tools
    assert sorted(t.type for t in tools) == ["builtin:calculator", "file_parsing"]
    # a full update without them clears them
    sdk.update_and_publish_agent(WORKSPACE, app_id, models.UpdateAndPublishAgentRequest(instructions="x"))
    managed = calls.server.http.get(f"/manage/v1/apps/{app_id}", headers=calls.server.auth(WORKSPACE)).json()
    assert managed["published"]["plugin_ids"] == [] and managed["published"]["file_parsing"] is False


def test_dialog_round_limits_the_history_a_session_gives_the_model(calls: OpenApi) -> None:
    app_id = create(calls.signed, application_config=Config(parameters=Parameters(dialog_round=1)))
    first = call(calls, app_id, prompt="第一句")
    session_id = first.output.session_id
    call(calls, app_id, prompt="第二句", session_id=session_id)
    third = call(calls, app_id, prompt="第三句", session_id=session_id)
    users = [m["content"] for m in json.loads(third.output.text)["messages"] if m["role"] == "user"]
    assert users == ["第二句", "第三句"]  # one earlier round kept, the first one dropped
