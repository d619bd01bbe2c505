"""Builds what the model sees: instructions with variables filled, history, the new turn.

History is trimmed oldest-turn-first, first to the app's turn limit, then to the
model's context window measured by the model's own token count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from openbailian.engine.app_config import VARIABLE_PATTERN, AppConfig
from openbailian.errors import InvalidParameter
from openbailian.providers.base import ChatMessage, ModelProvider

__all__ = ["fill_variables", "system_message", "split_turns", "trim_history"]


def fill_variables(config: AppConfig, values: Mapping[str, object]) -> str:
    """The app's instructions with every ``{{name}}`` replaced.

    A value comes from ``biz_params.user_prompt_params``, else the variable's
    default; a variable with neither is an error naming it.
    """
    declared = config.declared_variables()
    undeclared = sorted(set(values) - declared.keys())
    if undeclared:
        raise InvalidParameter(
            "biz_params.user_prompt_params names "
            + ", ".join(f"'{n}'" for n in undeclared)
            + ", which this app does not declare; "
            + (f"its variables: {', '.join(sorted(declared))}" if declared else "it declares no variables")
            + " (declare one with `openbailian apps update APP_ID --var NAME=DEFAULT` or the app's "
            "`variables` field, and use it as {{NAME}} in the instructions)"
        )
    resolved: dict[str, str] = {}
    for name, variable in declared.items():
        if name in values:
            resolved[name] = _variable_text(name, values[name])
        elif variable.default is not None:
            resolved[name] = variable.default
    missing = sorted(set(VARIABLE_PATTERN.findall(config.instructions)) - resolved.keys())
    if missing:
        raise InvalidParameter(
            "Missing prompt variable(s) "
            + ", ".join(f"'{n}'" for n in missing)
            + ": pass them in biz_params.user_prompt_params"
        )
    return VARIABLE_PATTERN.sub(lambda m: resolved[m.group(1)], config.instructions)


def _variable_text(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidParameter(
            f"biz_params.user_prompt_params.{name} must be a string or a number"
        )
    return str(value)


def system_message(
    instructions: str, caller_system: list[str], context_blocks: Sequence[str] = ()
) -> list[ChatMessage]:
    """One system message: the app's instructions, any the caller sent, then retrieved data."""
    parts = [p for p in [instructions, *caller_system, *context_blocks] if p.strip()]
    return [{"role": "system", "content": "\n\n".join(parts)}] if parts else []


def split_turns(history: list[ChatMessage]) -> list[list[ChatMessage]]:
    """Group messages into turns, each starting at a user message."""
    turns: list[list[ChatMessage]] = []
    for message in history:
        if message["role"] == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


async def trim_history(
    provider: ModelProvider,
    system: list[ChatMessage],
    history: list[ChatMessage],
    current: list[ChatMessage],
    *,
    max_turns: int,
    reserve_tokens: int,
) -> list[ChatMessage]:
    """The longest recent part of ``history`` that fits; raises if nothing fits."""
    turns = split_turns(history)
    turns = turns[len(turns) - max_turns :] if max_turns > 0 else []
    budget = provider.context_length - reserve_tokens
    while True:
        kept = [m for turn in turns for m in turn]
        messages = [*system, *kept, *current]
        if await provider.count_tokens(messages) <= budget:
            return messages
        if not turns:
            raise InvalidParameter(
                f"The input is too long for model '{provider.model_id}': "
                f"it exceeds the {budget} tokens left of its {provider.context_length}-token context"
            )
        turns = turns[1:]
