"""The memory family through the official SDK (unmodified), signed and with a bearer token:
the eight operations with paging, a memory used by an application call, and bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dashscope
import pytest
from alibabacloud_bailian20231229 import models
from alibabacloud_bailian20231229.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from dashscope import Application

from tests.api.openapi.conftest import WORKSPACE, OpenApi, create_key, sdk_client
from tests.support import LiveServer, make_settings

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def refused(call, status: int, code: str, mentions: str = "") -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientException) as caught:
        call()
    error = caught.value
    assert (error.status_code, error.code) == (status, code), error.data
    assert error.data["RequestId"] and error.data["requestId"] == error.data["RequestId"]
    assert mentions in error.data["Message"]


def node_contents(client: Client, memory_id: str) -> list[str]:
    body = client.list_memory_nodes(WORKSPACE, memory_id, models.ListMemoryNodesRequest(max_results=100)).body
    return [n.content for n in body.memory_nodes]


def test_memory_operations_end_to_end(sdk: Client) -> None:
    memory_id = sdk.create_memory(WORKSPACE, models.CreateMemoryRequest(description="美食顾问")).body.memory_id
    got = sdk.get_memory(WORKSPACE, memory_id, models.GetMemoryRequest()).body
    assert (got.memory_id, got.description, got.workspace_id) == (memory_id, "美食顾问", WORKSPACE)

    assert sdk.update_memory(WORKSPACE, memory_id, models.UpdateMemoryRequest(description="新描述")).body.request_id
    assert sdk.get_memory(WORKSPACE, memory_id, models.GetMemoryRequest()).body.description == "新描述"

    node_id = sdk.create_memory_node(
        WORKSPACE, memory_id, models.CreateMemoryNodeRequest(content="用户饮食偏好：面食")
    ).body.memory_node_id
    node = sdk.get_memory_node(WORKSPACE, memory_id, node_id, models.GetMemoryNodeRequest()).body
    assert (node.memory_id, node.memory_node_id, node.content, node.workspace_id) == (
        memory_id, node_id, "用户饮食偏好：面食", WORKSPACE
    )
    sdk.update_memory_node(WORKSPACE, memory_id, node_id, models.UpdateMemoryNodeRequest(content="用户饮食偏好：米饭"))
    assert node_contents(sdk, memory_id) == ["用户饮食偏好：米饭"]

    sdk.delete_memory_node(WORKSPACE, memory_id, node_id, models.DeleteMemoryNodeRequest())
    assert node_contents(sdk, memory_id) == []
    sdk.delete_memory(WORKSPACE, memory_id, models.DeleteMemoryRequest())
    refused(lambda: sdk.get_memory(WORKSPACE, memory_id, models.GetMemoryRequest()), 404, "MemoryNotFound", memory_id)


def test_paging_walks_every_memory_and_node_once(sdk: Client) -> None:
    made = [
        sdk.create_memory(WORKSPACE, models.CreateMemoryRequest(description=f"m{i}")).body.memory_id
        for i in range(5)
    ]
    seen, token = [], None
    while True:
        page = sdk.list_memories(WORKSPACE, models.ListMemoriesRequest(max_results=2, next_token=token)).body
        assert page.total_count == 5 and page.max_results == 2 and len(page.memories) <= 2
        seen += [m.memory_id for m in page.memories]
        token = page.next_token
        if not token:
            break
    assert seen == made

    for i in range(3):
        sdk.create_memory_node(WORKSPACE, made[0], models.CreateMemoryNodeRequest(content=f"事实{i}：{i}"))
    first = sdk.list_memory_nodes(WORKSPACE, made[0], models.ListMemoryNodesRequest(max_results=2)).body
    rest = sdk.list_memory_nodes(
        WORKSPACE, made[0], models.ListMemoryNodesRequest(max_results=2, next_token=first.next_token)
    ).body
    assert [n.content for n in first.memory_nodes + rest.memory_nodes] == ["事实0：0", "事实1：1", "事实2：2"]
    assert first.total_count == 3 and rest.next_token is None


def test_a_memory_made_with_the_sdk_is_recalled_by_an_application_call(
    openapi: OpenApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec's memory step: CreateMemory → CreateMemoryNode → a call with memory_id."""
    server = openapi.server
    memory_id = openapi.signed.create_memory(WORKSPACE, models.CreateMemoryRequest(description="顾客")).body.memory_id
    openapi.signed.create_memory_node(
        WORKSPACE, memory_id, models.CreateMemoryNodeRequest(content="用户饮食偏好：不吃香菜")
    )
    app_id = server.app(WORKSPACE, memory_enabled=True, instructions="你是美食顾问。")
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    response = Application.call(
        api_key=openapi.credentials["api_key"], app_id=app_id, prompt="推荐一道菜", memory_id=memory_id
    )
    assert response.status_code == 200, response.message
    [system, *_] = json.loads(response.output.text)["messages"]  # the echo model shows its context
    [memory] = re.findall(r"<user_memory>\n(.*?)\n</user_memory>", system["content"], re.DOTALL)
    assert "用户饮食偏好：不吃香菜" in memory


def test_the_same_memories_are_seen_by_the_management_api(openapi: OpenApi) -> None:
    memory_id = openapi.bearer.create_memory(WORKSPACE, models.CreateMemoryRequest(description="x")).body.memory_id
    openapi.bearer.create_memory_node(WORKSPACE, memory_id, models.CreateMemoryNodeRequest(content="用户住在杭州"))
    headers = {"Authorization": f"Bearer {openapi.credentials['api_key']}"}
    nodes = openapi.server.http.get(f"/manage/v1/memories/{memory_id}/nodes", headers=headers).json()["items"]
    assert [n["content"] for n in nodes] == ["用户住在杭州"]


def test_bad_input_is_refused_and_changes_nothing(openapi: OpenApi) -> None:
    sdk = openapi.signed
    memory_id = sdk.create_memory(WORKSPACE, models.CreateMemoryRequest(description="keep")).body.memory_id
    sdk.create_memory_node(WORKSPACE, memory_id, models.CreateMemoryNodeRequest(content="原来的事实"))

    refused(lambda: sdk.get_memory(WORKSPACE, "nope", models.GetMemoryRequest()), 404, "MemoryNotFound", "nope")
    refused(lambda: sdk.get_memory_node(WORKSPACE, memory_id, "nope", models.GetMemoryNodeRequest()), 404, "NotFound", "nope")
    refused(lambda: sdk.create_memory_node(WORKSPACE, "nope", models.CreateMemoryNodeRequest(content="x")), 404, "MemoryNotFound")
    refused(lambda: sdk.create_memory_node(WORKSPACE, memory_id, models.CreateMemoryNodeRequest()), 400, "InvalidParameter", "content")
    refused(
        lambda: sdk.create_memory_node(WORKSPACE, memory_id, models.CreateMemoryNodeRequest(content="长" * 501)),
        400, "InvalidParameter", "content",
    )
    refused(
        lambda: sdk.update_memory(WORKSPACE, memory_id, models.UpdateMemoryRequest(description="d" * 1001)),
        400, "InvalidParameter", "description",
    )
    refused(lambda: sdk.list_memories(WORKSPACE, models.ListMemoriesRequest(max_results="ten")), 400, "InvalidParameter", "maxResults")
    refused(lambda: sdk.list_memories(WORKSPACE, models.ListMemoriesRequest(max_results=0)), 400, "InvalidParameter", "maxResults")
    refused(lambda: sdk.list_memories(WORKSPACE, models.ListMemoriesRequest(next_token="garbage!")), 400, "InvalidParameter", "nextToken")

    # Another workspace's memory, through that workspace's own path and key: not found there.
    other = create_key(openapi.server, "ws-other")
    theirs = openapi.client(credentials=other)
    refused(lambda: theirs.get_memory("ws-other", memory_id, models.GetMemoryRequest()), 404, "MemoryNotFound", memory_id)
    refused(lambda: theirs.delete_memory("ws-other", memory_id, models.DeleteMemoryRequest()), 404, "MemoryNotFound", memory_id)

    assert sdk.get_memory(WORKSPACE, memory_id, models.GetMemoryRequest()).body.description == "keep"
    assert node_contents(sdk, memory_id) == ["原来的事实"]


def test_a_chunked_form_body_is_read(openapi: OpenApi) -> None:
    """The Node SDK sends form bodies with Transfer-Encoding: chunked and no Content-Length."""
    memory_id = openapi.bearer.create_memory(WORKSPACE, models.CreateMemoryRequest()).body.memory_id

    def chunks():  # type: ignore[no-untyped-def]
        yield "content=".encode()
        yield "用户喜欢%E7%8C%AB".encode()

    response = openapi.server.http.post(
        f"/{WORKSPACE}/memories/{memory_id}/memoryNodes",
        content=chunks(),
        headers={
            "x-acs-bearer-token": openapi.credentials["api_key"],
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["memoryNodeId"]
    assert node_contents(openapi.bearer, memory_id) == ["用户喜欢猫"]


def test_the_sdk_memory_example_runs(openapi: OpenApi) -> None:
    """examples/openapi_memory.py, unchanged, with only its environment set."""
    server = openapi.server
    app_id = server.app(WORKSPACE, memory_enabled=True, instructions="你是美食顾问。")
    env = {
        **os.environ,
        "BAILIAN_ENDPOINT": f"127.0.0.1:{server.port}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": openapi.credentials["access_key_id"],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": openapi.credentials["access_key_secret"],
        "BAILIAN_WORKSPACE_ID": WORKSPACE,
        "BAILIAN_APP_ID": app_id,
        "DASHSCOPE_API_KEY": openapi.credentials["api_key"],
        "DASHSCOPE_HTTP_BASE_URL": server.base_http_api_url,
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "openapi_memory.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "node " in result.stdout and "用户饮食偏好：不吃辣" in result.stdout.split("node ", 1)[1]
    answer = json.loads(result.stdout[result.stdout.index('{"messages"'):])  # the echo model's context
    assert "用户饮食偏好：不吃辣" in answer["messages"][0]["content"]


def test_an_oversized_form_body_is_refused_before_it_is_stored(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    server = LiveServer(make_settings(tmp_path / "home", database_url, manage_max_body_bytes=1024)).start()
    try:
        key = create_key(server, WORKSPACE)["api_key"]
        client = sdk_client(server, bearer_token=key)
        memory_id = client.create_memory(WORKSPACE, models.CreateMemoryRequest()).body.memory_id

        def chunks():  # type: ignore[no-untyped-def]
            yield b"content="
            for _ in range(8):
                yield b"a" * 256

        response = server.http.post(
            f"/{WORKSPACE}/memories/{memory_id}/memoryNodes",
            content=chunks(),
            headers={"x-acs-bearer-token": key, "content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 413, response.text
        assert response.json()["Code"] == "RequestTooLarge" and response.json()["RequestId"]
        assert node_contents(client, memory_id) == []
    finally:
        server.stop()
