"""Long-term memory made with the official Bailian management SDK, then used by an app call.

pip install alibabacloud-bailian20231229 dashscope

Environment (from `openbailian keys create --workspace team-a --json`):
  BAILIAN_ENDPOINT                  e.g. 127.0.0.1:8000 (host:port, no scheme)
  ALIBABA_CLOUD_ACCESS_KEY_ID       access_key_id
  ALIBABA_CLOUD_ACCESS_KEY_SECRET   access_key_secret
  BAILIAN_WORKSPACE_ID              the key's workspace
  BAILIAN_APP_ID                    an app of that workspace with long-term memory on
  DASHSCOPE_API_KEY                 api_key (sk-…), for the app call
  DASHSCOPE_HTTP_BASE_URL           e.g. http://127.0.0.1:8000/api/v1/
"""

import os
from http import HTTPStatus

from alibabacloud_bailian20231229 import models
from alibabacloud_bailian20231229.client import Client
from alibabacloud_tea_openapi.utils_models import Config
from dashscope import Application

endpoint = os.environ["BAILIAN_ENDPOINT"]
client = Client(
    Config(
        access_key_id=os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        access_key_secret=os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        endpoint=endpoint,
        protocol="http" if endpoint.startswith(("127.", "localhost")) else "https",
    )
)
workspace_id = os.environ["BAILIAN_WORKSPACE_ID"]

memory = client.create_memory(workspace_id, models.CreateMemoryRequest(description="美食顾问的顾客"))
memory_id = memory.body.memory_id
print(f"memory_id={memory_id}")
client.create_memory_node(
    workspace_id, memory_id, models.CreateMemoryNodeRequest(content="用户饮食偏好：不吃辣")
)
nodes = client.list_memory_nodes(workspace_id, memory_id, models.ListMemoryNodesRequest(max_results=10))
for node in nodes.body.memory_nodes:
    print(f"node {node.memory_node_id}: {node.content}")

response = Application.call(
    api_key=os.getenv("DASHSCOPE_API_KEY"),
    app_id=os.environ["BAILIAN_APP_ID"],
    prompt="推荐一道菜",
    memory_id=memory_id,
)
if response.status_code != HTTPStatus.OK:
    print(f"request_id={response.request_id} code={response.status_code} message={response.message}")
else:
    print(response.output.text)
