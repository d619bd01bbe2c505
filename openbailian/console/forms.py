"""Console forms read into the shapes the services take (the face's own parsing, no rules)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from openbailian.engine.app_config import VARIABLE_PATTERN
from openbailian.errors import InvalidParameter

__all__ = ["app_changes", "SWITCHES"]

SWITCHES = ("enable_thinking", "knowledge_enabled", "show_sources", "memory_enabled", "file_parsing")
_FLOATS = ("temperature", "top_p")
_INTS = ("top_k", "seed", "max_tokens")


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _number(form: FormData, name: str, kind: type) -> Any:
    raw = _text(form, name).strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise InvalidParameter(f"'{name}' must be {'a whole number' if kind is int else 'a number'}, not '{raw}'") from None


def _variables(form: FormData, instructions: str) -> list[dict[str, Any]]:
    names = [v for v in form.getlist("var_name") if isinstance(v, str)]
    defaults = [v for v in form.getlist("var_default") if isinstance(v, str)]
    descriptions = [v for v in form.getlist("var_description") if isinstance(v, str)]
    variables: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        name = name.strip()
        if not name or name in variables:
            continue
        default = defaults[index] if index < len(defaults) else ""
        description = descriptions[index] if index < len(descriptions) else ""
        variables[name] = {"name": name, "default": default or None, "description": description.strip()}
    for name in VARIABLE_PATTERN.findall(instructions):  # referenced but not declared: required
        variables.setdefault(name, {"name": name, "default": None, "description": ""})
    return list(variables.values())


def app_changes(form: FormData) -> tuple[str | None, dict[str, Any]]:
    """(new name or None, changes to the draft) from the app editor's form."""
    instructions = _text(form, "instructions").replace("\r\n", "\n")
    changes: dict[str, Any] = {
        "model": _text(form, "model").strip(),
        "instructions": instructions,
        "variables": _variables(form, instructions),
        "knowledge_base_ids": [v for v in form.getlist("kb") if isinstance(v, str)],
        "plugin_ids": [v for v in form.getlist("plugin") if isinstance(v, str)],
        "parameters": {
            **{name: _number(form, name, float) for name in _FLOATS},
            **{name: _number(form, name, int) for name in _INTS},
        },
        "max_history_turns": _number(form, "max_history_turns", int),
    }
    for switch in SWITCHES:
        changes[switch] = form.get(switch) == "on"
    name = _text(form, "name").strip() or None
    return name, changes
