"""Built-in plugins, enabled per app by putting their ids in ``plugin_ids``:

- ``builtin:calculator`` — function ``calculator(expression)``: safe arithmetic.
- ``builtin:datetime`` — function ``current_datetime(timezone?)``: the current date and
  time in an IANA timezone (default Asia/Shanghai).

They run in process and never touch the network or the file system.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from openbailian.tools.calculator import CalculatorError, calculate, format_number

__all__ = ["BUILTIN_PREFIX", "Builtin", "BUILTINS", "is_builtin"]

BUILTIN_PREFIX = "builtin:"
_WEEKDAYS = ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"]


@dataclass(frozen=True, slots=True)
class Builtin:
    tool_id: str
    function: str
    title: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], str]


def _calculator(arguments: dict[str, Any]) -> str:
    expression = arguments.get("expression")
    try:
        return format_number(calculate(expression))
    except CalculatorError as error:
        return f"Error: {error}"


def _now(arguments: dict[str, Any]) -> str:
    name = arguments.get("timezone") or "Asia/Shanghai"
    try:
        zone = ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return f"Error: unknown timezone {str(name)[:64]!r}; use an IANA name such as Asia/Shanghai"
    now = datetime.now(zone)
    return f"{now.isoformat(timespec='seconds')} ({_WEEKDAYS[now.weekday()]}, {name})"


BUILTINS: dict[str, Builtin] = {
    b.tool_id: b
    for b in [
        Builtin(
            tool_id="builtin:calculator",
            function="calculator",
            title="计算器",
            description="Evaluate an arithmetic expression exactly, e.g. '(3+4)*12.5/7' or 'sqrt(2)'.",
            parameters={
                "type": "object",
                "properties": {
                    "expression": {"type": "string", "description": "The arithmetic expression"}
                },
                "required": ["expression"],
            },
            run=_calculator,
        ),
        Builtin(
            tool_id="builtin:datetime",
            function="current_datetime",
            title="当前时间",
            description="The current date, time and weekday in a timezone.",
            parameters={
                "type": "object",
                "properties": {
                    "timezone": {
                        "type": "string",
                        "description": "IANA timezone, e.g. Asia/Shanghai (default)",
                    }
                },
            },
            run=_now,
        ),
    ]
}


def is_builtin(tool_id: str) -> bool:
    return tool_id.startswith(BUILTIN_PREFIX)
