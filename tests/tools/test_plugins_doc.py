"""docs/plugins.md: every spec field has a row, and the worked example works as written — its
service runs, its spec registers, and a call through the SDK reaches the service with the
pass-through value and the user's token, which the model never sees."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dashscope
import httpx
import pytest
import yaml
from dashscope import Application

from openbailian.tools.plugin import PluginAuth, PluginSpec
from tests.support import LiveServer, free_port, make_settings

DOC = Path(__file__).parents[2] / "docs" / "plugins.md"
TEXT = DOC.read_text(encoding="utf-8")
EXAMPLE_PORT = "8765"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TEXT, re.DOTALL)


def rows() -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", TEXT, re.MULTILINE))


@pytest.mark.parametrize("field", [*PluginSpec.model_fields, *PluginAuth.model_fields])
def test_every_spec_field_has_a_row(field: str) -> None:
    assert field in rows()


def test_the_doc_names_only_real_fields() -> None:
    assert rows() <= {*PluginSpec.model_fields, *PluginAuth.model_fields}


@pytest.fixture
def orders_service(tmp_path: Path) -> Iterator[str]:
    """The doc's service, run as written on a free port; yields its port."""
    [source] = blocks("python")[:1]
    script = tmp_path / "orders_service.py"
    script.write_text(source, encoding="utf-8")
    port = str(free_port())
    process = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PORT": port})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/orders/x", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the doc's service did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_worked_example_works_as_written(tmp_path, database_url, orders_service, monkeypatch) -> None:
    port = orders_service
    [spec_text] = blocks("yaml")
    spec = yaml.safe_load(spec_text.replace(EXAMPLE_PORT, port))
    [shell] = blocks("bash")
    assert f"OPENBAILIAN_OUTBOUND_ALLOW=127.0.0.1:{EXAMPLE_PORT}" in shell
    settings = make_settings(tmp_path / "home", database_url, outbound_allow=f"127.0.0.1:{port}")
    server = LiveServer(settings).start()
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    try:
        created = server.http.post("/manage/v1/plugins", json=spec, headers=server.auth())
        assert created.status_code == 201, created.text
        tool_id = created.json()["tool_id"]
        app_id = server.app(plugin_ids=[tool_id])  # the echo model: "#call" makes it call the tool
        sdk_example = blocks("python")[1]
        biz_params = {
            "user_defined_params": {tool_id: {"tenant": "acme"}},
            "user_defined_tokens": {tool_id: {"user_token": "tok-alice"}},
        }
        assert json.loads(json.dumps(biz_params).replace(tool_id, "TOOL_ID")) == _biz_params_of(sdk_example)
        response = Application.call(
            api_key=server.key(), app_id=app_id, prompt='#call order_status {"order_id": "A1001"}',
            has_thoughts=True, biz_params=biz_params,
        )
        assert response.status_code == 200, response.message
        [thought] = [t for t in response.output.thoughts if t.action_type == "api"]
        assert thought.action_name == "订单查询"
        observation = json.loads(thought.observation)
        assert observation == {"order_id": "A1001", "status": "已发货，预计明天送达", "user": "alice", "tenant": "acme"}
        # What the model was given (the echo model shows it): the tool's answer, never the token.
        assert "已发货" in response.output.text and "tok-alice" not in response.output.text

        refused = Application.call(
            api_key=server.key(), app_id=app_id, prompt='#call order_status {"order_id": "A1001"}',
            has_thoughts=True,
        )
        [thought] = [t for t in refused.output.thoughts if t.action_type == "api"]
        assert "needs a user token" in thought.observation

        wrong = {**biz_params, "user_defined_tokens": {tool_id: {"user_token": "tok-mallory"}}}
        refused = Application.call(
            api_key=server.key(), app_id=app_id, prompt='#call order_status {"order_id": "A1001"}',
            has_thoughts=True, biz_params=wrong,
        )
        [thought] = [t for t in refused.output.thoughts if t.action_type == "api"]
        assert "unknown token" in thought.observation
    finally:
        server.stop()


def _biz_params_of(example: str) -> dict:
    """The ``biz_params`` literal of the doc's SDK example."""
    literal = re.search(r"biz_params=(\{.*?\n    \}),", example, re.DOTALL).group(1)
    return eval(literal, {})  # noqa: S307 - our own doc's literal


def test_the_quoted_spec_error_is_the_real_one() -> None:
    from openbailian.errors import InvalidParameter
    from openbailian.tools.plugin import parse_spec

    with pytest.raises(InvalidParameter) as refused:
        parse_spec({"name": "a", "description": "d", "url": "http://x.example", "auth": {"type": "oauth"}})
    assert f"`{refused.value.message}`" in TEXT
