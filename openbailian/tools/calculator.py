"""A safe arithmetic evaluator: parsed with ``ast``, never ``eval``.

Only numbers, + - * / // % **, unary signs, parentheses and a few math
functions (sqrt, abs, round, min, max, …) and constants (pi, e). Exponents,
operand sizes and expression length are bounded so no input can take long or
eat memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from openbailian.errors import CalculatorError

__all__ = ["CalculatorError", "calculate", "format_number"]

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**100
MAX_NODES = 200

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
# Operators and punctuation models write instead of Python's.
_SPELLINGS = {"×": "*", "÷": "/", "^": "**", "（": "(", "）": ")", "，": ",", "−": "-"}


def calculate(expression: object) -> int | float:
    """The value of ``expression``; anything but a non-empty string is refused too."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("expression must be a non-empty string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    for written, python in _SPELLINGS.items():
        expression = expression.replace(written, python)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise CalculatorError(f"not an arithmetic expression: {expression!r}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError("expression is too complex")
    return _evaluate(tree.body)


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"exponent larger than {MAX_EXPONENT}")
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError("result too large") from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = _FUNCTIONS.get(node.func.id)
        if function is not None and len(node.args) <= 10:
            try:
                return _bounded(function(*(_evaluate(a) for a in node.args)))
            except (ValueError, TypeError, OverflowError) as error:
                raise CalculatorError(f"{node.func.id}: {error}") from None
    if isinstance(node, ast.Name | ast.Call | ast.Attribute):
        raise CalculatorError("only arithmetic and the functions " + ", ".join(sorted(_FUNCTIONS)))
    raise CalculatorError(f"not allowed in an expression: {type(node).__name__}")


def _bounded(value: Any) -> int | float:
    if isinstance(value, complex):
        raise CalculatorError("complex results are not supported")
    if not isinstance(value, int | float):
        raise CalculatorError(f"not a number: {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("result too large")
    return value


def format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, float):  # 12 significant digits: 0.1+0.2 shows as 0.3
        return format(value, ".12g")
    return str(value)
