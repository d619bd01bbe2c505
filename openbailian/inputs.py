"""Checks every piece of caller text passes before it reaches storage or a model.

Text must be valid UTF-8 with no NUL and no lone surrogate (PostgreSQL refuses NUL,
and a lone surrogate cannot be encoded when a turn is stored: both used to surface as a
500 after the model had answered). JSON is bounded in nesting depth and number size
(Python's ``int`` refuses more than 4,300 digits; a deep document exhausts the stack).
Every violation is an :class:`~openbailian.errors.InvalidParameter` naming where.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import unquote_to_bytes

from openbailian.errors import InvalidParameter

__all__ = [
    "DEFAULT_MAX_JSON_DEPTH",
    "MAX_NUMBER_CHARS",
    "check_text",
    "check_json_value",
    "parse_json",
    "check_url_encoded",
    "decode_utf8",
]

DEFAULT_MAX_JSON_DEPTH = 64
MAX_NUMBER_CHARS = 100


def check_text(value: str, where: str) -> str:
    """``value`` unchanged when it has no NUL and no lone surrogate."""
    if "\x00" in value:
        raise InvalidParameter(f"{where}: text must not contain a NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParameter(
            f"{where}: text contains a lone surrogate (e.g. \\ud800), which is not valid Unicode"
        ) from None
    return value


def decode_utf8(data: bytes, where: str) -> str:
    """Strict UTF-8 (encoded surrogates included are refused), then :func:`check_text`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidParameter(f"{where} is not valid UTF-8 (byte {error.start})") from None
    return check_text(text, where)


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidParameter(f"The request body has a number of more than {MAX_NUMBER_CHARS} digits")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidParameter(f"The request body has a number of more than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidParameter(f"The request body has a number out of range ({text[:20]})")
    return value


def _refuse_constant(name: str) -> Any:
    raise InvalidParameter(f"The request body is not valid JSON: {name} is not a JSON value")


def parse_json(data: bytes, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """The JSON value of a request body, after every check of this module."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidParameter(f"The request body is not valid JSON: not UTF-8 (byte {error.start})") from None
    try:
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError as error:
        raise InvalidParameter(f"The request body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidParameter(f"The request body is nested more than {max_depth} levels deep") from None
    check_json_value(value, max_depth=max_depth)
    return value


def check_json_value(value: Any, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH, where: str = "body") -> None:
    """Depth and text of every string (keys too) of an already parsed JSON value."""
    stack: list[tuple[Any, int, str]] = [(value, 1, where)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            check_text(item, path)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise InvalidParameter(f"The request body is nested more than {max_depth} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                check_text(key, f"{path} (a key)")
                stack.append((child, depth + 1, f"{path}.{key}"))
        else:
            stack.extend((child, depth + 1, f"{path}[{index}]") for index, child in enumerate(item))


def check_url_encoded(data: bytes, where: str) -> None:
    """A query string or an ``application/x-www-form-urlencoded`` body, decoded strictly."""
    for pair in data.split(b"&"):
        for part in pair.split(b"=", 1):
            decode_utf8(unquote_to_bytes(part.replace(b"+", b" ")), where)
