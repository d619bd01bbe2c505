"""An agent made with the official Bailian management SDK, then called with dashscope.

pip install alibabacloud-bailian20231229 dashscope

Environment (from `openbailian keys create --workspace team-a --json`):
  BAILIAN_ENDPOINT                  e.g. 127.0.0.1:8000 (host:port, no scheme)
  ALIBABA_CLOUD_ACCESS_KEY_ID       access_key_id
  ALIBABA_CLOUD_ACCESS_KEY_SECRET   access_key_secret
  BAILIAN_WORKSPACE_ID              the key's workspace
  BAILIAN_MODEL_ID                  a configured model (`openbailian models list`), e.g. local
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

created = client.create_and_pulish_agent(
    workspace_id,
    models.CreateAndPulishAgentRequest(
        name="美食顾问",
        model_id=os.environ.get("BAILIAN_MODEL_ID", "local"),
        instructions="请给出{{city}}的三种美食推荐，只显示美食名称，逗号隔开。",
        application_config=models.CreateAndPulishAgentRequestApplicationConfig(
            parameters=models.CreateAndPulishAgentRequestApplicationConfigParameters(
                temperature=0.3, max_tokens=256, dialog_round=5
            ),
        ),
    ),
)
app_id = created.body.data
print(f"app_id={app_id}")

agent = client.get_published_agent(workspace_id, app_id, models.GetPublishedAgentRequest()).body.data
print(f"name={agent.name} model={agent.model_id} temperature={agent.application_config.parameters.temperature}")

response = Application.call(
    api_key=os.getenv("DASHSCOPE_API_KEY"),
    app_id=app_id,
    prompt="美食推荐",
    biz_params={"user_prompt_params": {"city": "杭州"}},
)
if response.status_code != HTTPStatus.OK:
    print(f"request_id={response.request_id}")
    print(f"code={response.status_code}")
    print(f"message={response.message}")
else:
    print(f"text={response.output.text}")
