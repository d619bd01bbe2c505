"""The model ⇄ tools loop: stream the model, run the tools it calls, feed results back.

Each round streams the model with the tools offered. Text and reasoning pass
through as they come (models that call tools usually say nothing else in that
round; whatever they did say stays in the assistant message). When a round ends
with tool calls, each call is run, shown as a ``Thought`` (``action_type``
``api``), and its observation is appended as a ``tool`` message; then the model
is called again. After ``max_rounds`` rounds with tool calls a ``Thought``
says the cap was hit and the model is called once more *without* tools, the
results given as plain text (a small model shown tool messages tends to call
again or say nothing), so it has to answer. Should it still say nothing, the
answer is what the tools returned: a call never ends in an empty answer. The
last item is a ``ModelChunk`` with the final ``finish_reason`` and the tokens
of all rounds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from openbailian.engine.augment import CallContext, ToolRunner, ToolSpec
from openbailian.engine.events import Thought
from openbailian.providers.base import (
    ChatMessage,
    GenerationOptions,
    ModelChunk,
    ModelProvider,
    ToolCall,
)

__all__ = ["run_with_tools", "function_specs"]

logger = logging.getLogger("openbailian.tools")


def function_specs(tools: list[ToolSpec]) -> tuple[dict[str, Any], ...]:
    """OpenAI-style function specs for ``GenerationOptions.tools``."""
    return tuple(
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    )


async def run_with_tools(
    provider: ModelProvider,
    messages: list[ChatMessage],
    options: GenerationOptions,
    runner: ToolRunner,
    context: CallContext,
    *,
    max_rounds: int = 3,
    tools: list[ToolSpec] | None = None,
) -> AsyncGenerator[ModelChunk | Thought, None]:
    """``tools``: the runner's offer when the caller already has it (else it is asked)."""
    if tools is None:
        tools = await runner.tools_for(context)
    titles = {t.name: t.title or t.name for t in tools}
    with_tools = replace(options, tools=function_specs(tools)) if tools else options
    without_tools = replace(options, tools=())
    question = list(messages)
    messages = list(messages)
    results: list[tuple[str, ToolCall, str]] = []  # (title, call, observation), in order
    input_tokens = output_tokens = 0
    for round_number in range(max_rounds + 1):
        offer = tools and round_number < max_rounds
        capped = bool(tools) and not offer
        if capped:
            yield Thought(action_type="response", thought=_cap_note(max_rounds))
            messages = [*question, _results_as_text(results)]
        text: list[str] = []
        calls: list[ToolCall] = []
        finish_reason = "stop"
        async with aclosing(provider.stream(messages, with_tools if offer else without_tools)) as chunks:
            async for chunk in chunks:
                if chunk.tool_calls and offer:
                    calls.extend(chunk.tool_calls)
                if chunk.text or chunk.reasoning:
                    text.append(chunk.text)
                    yield ModelChunk(text=chunk.text, reasoning=chunk.reasoning)
                if chunk.finish_reason:
                    finish_reason = chunk.finish_reason
                    input_tokens += chunk.input_tokens or 0
                    output_tokens += chunk.output_tokens or 0
        if not calls:
            if capped and not "".join(text).strip():
                yield ModelChunk(text=_results_answer(results))
            yield ModelChunk(
                finish_reason=finish_reason, input_tokens=input_tokens, output_tokens=output_tokens
            )
            return
        messages.append(_assistant_message("".join(text), calls))
        for tool_call in calls:
            observation = await _run_one(runner, context, tool_call)
            results.append((titles.get(tool_call.name, tool_call.name), tool_call, observation))
            yield Thought(
                action_type="api",
                thought=f"调用插件 {titles.get(tool_call.name, tool_call.name)}",
                action=tool_call.name,
                action_name=titles.get(tool_call.name, tool_call.name),
                action_input=tool_call.arguments,
                observation=observation,
            )
            messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": observation})


def _cap_note(max_rounds: int) -> str:
    return f"插件调用已达上限（{max_rounds} 轮），不再调用插件，根据已返回的结果回答"


def _results_as_text(results: list[tuple[str, ToolCall, str]]) -> ChatMessage:
    lines = [
        f"{number}. {title} {json.dumps(tool_call.arguments, ensure_ascii=False)} → {observation}"
        for number, (title, tool_call, observation) in enumerate(results, 1)
    ]
    return {
        "role": "user",
        "content": "插件已返回以下结果：\n" + "\n".join(lines)
        + "\n请只根据这些结果直接回答上面的问题，不要再调用插件。",
    }


def _results_answer(results: list[tuple[str, ToolCall, str]]) -> str:
    """What the tools returned, as the answer of a model that would not give one."""
    title, _call, observation = results[-1]
    return f"{title} 返回：{observation}"


async def _run_one(runner: ToolRunner, context: CallContext, tool_call: ToolCall) -> str:
    try:
        return await runner.run(context, tool_call)
    except Exception as error:  # a tool failure is an observation, never a crash
        logger.warning("tool %s raised %s", tool_call.name, type(error).__name__)
        return f"Error: the tool failed ({type(error).__name__})"


def _assistant_message(text: str, calls: list[ToolCall]) -> ChatMessage:
    return {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
            }
            for c in calls
        ],
    }
