"""Reading an OpenAPI call's parameters: path, form body and query, as the SDKs send them.

The SDKs send every value as a string: lists and objects as JSON strings
(``DocumentIds=["f1","f2"]``), booleans as ``True``/``False`` (Python) or
``true``/``false`` (Java, Go, Node), numbers as strings. Form bodies are
``application/x-www-form-urlencoded``, sometimes with ``Transfer-Encoding: chunked``
(no Content-Length). A route takes ``params: ParamsDep`` and reads typed values::

    name = params.text("Name", required=True, max_length=100)
    ids = params.json_list("DocumentIds")           # list[str] | None
    top_k = params.integer("TopK", default=5, minimum=1, maximum=100)
    rerank = params.boolean("EnableReranking", default=False)

A bad value raises ``InvalidParameter`` naming the parameter (400 in the family's envelope).
The path wins over the form body, which wins over the query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request

from openbailian.errors import InvalidParameter, RequestTooLarge

__all__ = ["Params", "ParamsDep", "read_params", "read_body"]

_TRUE = {"true", "True", "TRUE", "1"}
_FALSE = {"false", "False", "FALSE", "0"}
_FORM = "application/x-www-form-urlencoded"


async def read_body(request: Request) -> bytes:
    """The body (chunked or not), refused past ``OPENBAILIAN_MANAGE_MAX_BODY_BYTES``; read once per request."""
    cached = getattr(request.state, "openapi_body", None)
    if isinstance(cached, bytes):
        return cached
    limit = request.app.state.runtime.settings.manage_max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request.state.openapi_body = body
    return body


def _form_fields(body: bytes, content_type: str) -> list[tuple[str, str]]:
    if not body:
        return []
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise InvalidParameter(f"The JSON body is not valid JSON: {str(error)[:100]}") from None
        if not isinstance(data, dict):
            raise InvalidParameter("The JSON body must be an object")
        return [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()]
    if media not in (_FORM, ""):
        return []  # another body (an upload): not parameters
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidParameter("The form body is not UTF-8") from None


class Params:
    """The string values of one call, read with types."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    @classmethod
    def of(cls, *sources: Iterable[tuple[str, str]]) -> Params:
        values: dict[str, str] = {}
        for source in sources:  # first source wins, and the first value of a repeated name
            for name, value in source:
                values.setdefault(name, value)
        return cls(values)

    def raw(self, name: str) -> str | None:
        return self._values.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def text(
        self,
        name: str,
        *,
        required: bool = False,
        default: str | None = None,
        max_length: int | None = None,
        allow_empty: bool = True,
    ) -> str | None:
        value = self._values.get(name)
        if value is None or (value == "" and not allow_empty):
            if required:
                raise InvalidParameter(f"The parameter {name} is required")
            return default
        if max_length is not None and len(value) > max_length:
            raise InvalidParameter(f"The parameter {name} is longer than {max_length} characters")
        return value

    def required_text(self, name: str, *, max_length: int | None = None) -> str:
        value = self.text(name, required=True, max_length=max_length, allow_empty=False)
        assert value is not None
        return value

    def choice(self, name: str, options: Iterable[str], *, default: str | None = None, required: bool = False) -> str | None:
        value = self.text(name, required=required, default=default, allow_empty=False)
        allowed = list(options)
        if value is not None and value not in allowed:
            raise InvalidParameter(f"The parameter {name} must be one of {', '.join(allowed)}, not '{value}'")
        return value

    def integer(
        self,
        name: str,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
        required: bool = False,
    ) -> int | None:
        value = self.text(name, required=required, allow_empty=False)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise InvalidParameter(f"The parameter {name} must be an integer, not '{value[:50]}'") from None
        if minimum is not None and number < minimum:
            raise InvalidParameter(f"The parameter {name} must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise InvalidParameter(f"The parameter {name} must be at most {maximum}")
        return number

    def number(
        self, name: str, *, default: float | None = None, minimum: float | None = None, maximum: float | None = None
    ) -> float | None:
        value = self.text(name, allow_empty=False)
        if value is None:
            return default
        try:
            number = float(value.strip())
        except ValueError:
            raise InvalidParameter(f"The parameter {name} must be a number, not '{value[:50]}'") from None
        if number != number or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise InvalidParameter(f"The parameter {name} is out of range ({minimum}..{maximum})")
        return number

    def boolean(self, name: str, *, default: bool | None = None) -> bool | None:
        value = self.text(name, allow_empty=False)
        if value is None:
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise InvalidParameter(f"The parameter {name} must be true or false, not '{value[:50]}'")

    def json_value(self, name: str, *, required: bool = False) -> Any:
        value = self.text(name, required=required, allow_empty=False)
        if value is None:
            return None
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # nested too deep is malformed too
            raise InvalidParameter(f"The parameter {name} must be a JSON string, not '{value[:50]}'") from None

    def json_list(self, name: str, *, item: type = str, required: bool = False, max_items: int = 1000) -> list[Any] | None:
        """A JSON-string list whose items are all of type ``item``."""
        value = self.json_value(name, required=required)
        if value is None:
            return None
        if not isinstance(value, list) or not all(_is_a(v, item) for v in value):
            raise InvalidParameter(f"The parameter {name} must be a JSON list of {item.__name__}")
        if len(value) > max_items:
            raise InvalidParameter(f"The parameter {name} has more than {max_items} items")
        return value

    def json_object(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        value = self.json_value(name, required=required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidParameter(f"The parameter {name} must be a JSON object")
        return value


def _is_a(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # JSON true is not an int here
        return kind is bool
    return isinstance(value, kind)


async def read_params(request: Request) -> Params:
    """Path, then form (or JSON) body, then query parameters of this call."""
    body = await read_body(request)
    form = _form_fields(body, request.headers.get("content-type", ""))
    path = [(k, str(v)) for k, v in request.path_params.items()]
    return Params.of(path, form, request.query_params.multi_items())


ParamsDep = Annotated[Params, Depends(read_params)]
