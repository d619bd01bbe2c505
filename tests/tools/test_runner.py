"""Plugins called by the model: arguments, pass-through params and the user token reach the
tool; the model never sees the token or the pass-through values."""

from __future__ import annotations

import json

import pytest

from openbailian.engine.app_config import AppConfig
from openbailian.engine.augment import CallContext
from openbailian.engine.call import Call
from openbailian.engine.events import Thought
from openbailian.engine.tool_loop import run_with_tools
from openbailian.providers.base import GenerationOptions, ModelChunk, ToolCall
from openbailian.providers.echo import EchoProvider
from openbailian.runtime import Runtime
from openbailian.services import plugins as plugin_service

TOKEN = "sk-user-secret-123456"


@pytest.fixture
async def runtime(settings, tool_server):
    settings = settings.model_copy(update={"outbound_allow": f"127.0.0.1:{tool_server.port}"})
    runtime = Runtime.build(settings)
    await runtime.migrate()
    yield runtime
    await runtime.aclose()


async def make_plugin(runtime, tool_server, workspace="ws1", **overrides):
    spec = {
        "name": "get_weather",
        "title": "天气查询",
        "description": "查询城市天气",
        "method": "GET",
        "url": f"{tool_server.url}/weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "passthrough": ["tenant"],
        "auth": {"type": "user_token", "header": "Authorization", "scheme": "Bearer"},
        **overrides,
    }
    async with runtime.db.transaction() as session:
        return (await plugin_service.create_plugin(
            session, workspace, spec, guard=runtime.tools.guard, box=runtime.tools.box
        )).id


def call_for(plugin_ids, tool_id=None, workspace="ws1", prompt=""):
    call = Call(
        app_id="app1",
        workspace_id=workspace,
        request_id="r1",
        prompt=prompt,
        user_defined_params={tool_id: {"tenant": "acme", "city": "上海"}} if tool_id else {},
        user_defined_tokens={tool_id: {"user_token": TOKEN}} if tool_id else {},
    )
    return CallContext(call=call, config=AppConfig(model="echo", plugin_ids=plugin_ids), query=prompt)


async def collect(stream):
    return [item async for item in stream]


async def test_echo_tool_call_reaches_the_tool_and_comes_back_as_a_thought(runtime, tool_server):
    from openbailian.tools.runner import PluginToolRunner

    tool_id = await make_plugin(runtime, tool_server)
    runner = PluginToolRunner(runtime.db, runtime.settings)
    call = call_for([tool_id, "builtin:calculator"], tool_id)
    (spec, calc) = await runner.tools_for(call)
    assert spec.name == "get_weather" and "tenant" not in json.dumps(spec.parameters)
    messages = [{"role": "user", "content": '天气？ #call get_weather {"city": "北京"}'}]
    items = await collect(run_with_tools(EchoProvider(), messages, GenerationOptions(), runner, call))

    (request,) = tool_server.requests
    assert request["query"] == {"city": "上海", "tenant": "acme"}  # the caller's values win
    assert request["headers"]["authorization"] == f"Bearer {TOKEN}"

    thought = next(i for i in items if isinstance(i, Thought))
    assert (thought.action_type, thought.action, thought.action_name) == ("api", "get_weather", "天气查询")
    assert thought.action_input == {"city": "北京"} and "晴" in thought.observation
    answer = "".join(i.text for i in items if isinstance(i, ModelChunk))
    final = items[-1]
    assert isinstance(final, ModelChunk) and final.finish_reason == "stop"
    assert final.input_tokens > 0 and final.output_tokens > 0
    echoed = json.loads(answer)["messages"]
    assert [m["role"] for m in echoed] == ["user", "assistant", "tool"]
    assert "晴" in echoed[-1]["content"]
    everything = json.dumps([str(i) for i in items], ensure_ascii=False)
    assert TOKEN not in everything and "acme" not in everything


async def test_a_tool_that_echoes_the_token_never_shows_it(runtime, tool_server):
    from openbailian.tools.runner import PluginToolRunner

    tool_id = await make_plugin(runtime, tool_server, url=f"{tool_server.url}/echo-auth")
    runner = PluginToolRunner(runtime.db, runtime.settings)
    observation = await runner.run(call_for([tool_id], tool_id), ToolCall("c1", "get_weather", {"city": "x"}))
    assert TOKEN not in observation and "***" in observation


async def test_post_plugins_send_a_json_body(runtime, tool_server):
    from openbailian.tools.runner import PluginToolRunner

    tool_id = await make_plugin(runtime, tool_server, method="POST", url=f"{tool_server.url}/orders/{{city}}")
    runner = PluginToolRunner(runtime.db, runtime.settings)
    observation = await runner.run(call_for([tool_id], tool_id), ToolCall("c1", "get_weather", {"city": "北 京", "n": 2}))
    (request,) = tool_server.requests
    assert request["path"] == "/orders/%E4%B8%8A%E6%B5%B7"  # the pass-through city, URL-encoded
    assert request["json"] == {"n": 2, "tenant": "acme"}
    assert '"ok": true' in observation


async def test_tool_failures_become_observations(runtime, tool_server):
    from openbailian.tools.runner import PluginToolRunner

    runner = PluginToolRunner(runtime.db, runtime.settings)
    failing = await make_plugin(runtime, tool_server, url=f"{tool_server.url}/fail", auth={"type": "none"})
    # Registration refuses a metadata URL itself; at call time a redirect to one is refused too.
    to_metadata = f"{tool_server.url}/redirect?to=http://169.254.169.254/latest"
    internal = await make_plugin(runtime, tool_server, name="meta", url=to_metadata, auth={"type": "none"},
                                 parameters={"type": "object", "properties": {}}, passthrough=[])
    needs_token = await make_plugin(runtime, tool_server, name="private")
    call = call_for([failing, internal, needs_token])
    assert (await runner.run(call, ToolCall("1", "get_weather", {"city": "x"}))).startswith("Error: HTTP 500")
    assert "refused" in await runner.run(call, ToolCall("2", "meta", {}))
    assert "user token" in await runner.run(call, ToolCall("3", "private", {"city": "x"}))
    assert "missing required" in await runner.run(call, ToolCall("4", "private", {}))
    assert "no tool named" in await runner.run(call, ToolCall("5", "rm_rf", {}))


async def test_only_plugins_of_the_callers_workspace_are_offered(runtime, tool_server):
    from openbailian.tools.runner import PluginToolRunner

    mine = await make_plugin(runtime, tool_server, "ws1")
    foreign = await make_plugin(runtime, tool_server, "ws2", name="foreign_tool")
    runner = PluginToolRunner(runtime.db, runtime.settings)
    specs = await runner.tools_for(call_for([mine, foreign, "missing", "builtin:nope", "builtin:datetime"]))
    assert [s.name for s in specs] == ["get_weather", "current_datetime"]
    observation = await runner.run(call_for([foreign]), ToolCall("1", "foreign_tool", {"city": "x"}))
    assert "no tool named" in observation and tool_server.requests == []


class AlwaysCalls:
    """A model that calls the calculator every time tools are offered."""

    model_id = "loop"
    context_length = 4096

    def __init__(self):
        self.offered: list[bool] = []

    async def stream(self, messages, options):
        self.offered.append(bool(options.tools))
        if options.tools:
            yield ModelChunk(tool_calls=[ToolCall("x", "calculator", {"expression": "6*7"})])
            yield ModelChunk(finish_reason="tool_calls", input_tokens=10, output_tokens=2)
        else:
            yield ModelChunk(text="答案是 42")
            yield ModelChunk(finish_reason="stop", input_tokens=20, output_tokens=3)

    async def count_tokens(self, messages):
        return 1

    async def aclose(self):
        return None


async def test_rounds_stop_at_max_rounds_and_usage_is_summed(runtime):
    from openbailian.tools.runner import PluginToolRunner

    model = AlwaysCalls()
    runner = PluginToolRunner(runtime.db, runtime.settings)
    items = await collect(
        run_with_tools(model, [{"role": "user", "content": "6*7?"}], GenerationOptions(), runner,
                       call_for(["builtin:calculator"]), max_rounds=2)
    )
    thoughts = [i for i in items if isinstance(i, Thought)]
    assert [t.observation for t in thoughts] == ["42", "42", None]
    assert thoughts[-1].action_type == "response" and "上限（2 轮）" in thoughts[-1].thought
    assert model.offered == [True, True, False]
    assert "".join(i.text for i in items if isinstance(i, ModelChunk)) == "答案是 42"
    assert (items[-1].input_tokens, items[-1].output_tokens) == (40, 7)


async def test_without_tools_the_model_streams_as_usual(runtime):
    from openbailian.tools.runner import PluginToolRunner

    runner = PluginToolRunner(runtime.db, runtime.settings)
    messages = [{"role": "user", "content": "#call calculator {}"}]
    items = await collect(run_with_tools(EchoProvider(), messages, GenerationOptions(), runner, call_for([])))
    assert not any(isinstance(i, Thought) for i in items)
    assert json.loads("".join(i.text for i in items))["messages"] == messages


async def test_a_runner_that_raises_does_not_crash_the_answer(runtime):
    class Broken:
        async def tools_for(self, call):
            from openbailian.engine.augment import ToolSpec

            return [ToolSpec("calculator", "c", {"type": "object", "properties": {}})]

        async def run(self, call, tool_call):
            raise RuntimeError("boom")

    messages = [{"role": "user", "content": '#call calculator {"expression": "1"}'}]
    items = await collect(run_with_tools(EchoProvider(), messages, GenerationOptions(), Broken(), call_for([])))
    (thought,) = [i for i in items if isinstance(i, Thought)]
    assert thought.observation.startswith("Error:")
    assert items[-1].finish_reason == "stop"
