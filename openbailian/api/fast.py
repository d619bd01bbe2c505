"""Hot routes as plain Starlette routes, which ``create_app`` puts before every router.

FastAPI 0.165 matches a request against every included router, twice, then solves the route's
dependencies: ~0.7 ms a request on the machines of docs/benchmarks.md, in series with what the
caller waits for (on a retrieval call, before its question reaches the model). A fast route
answers exactly as its FastAPI twin, which stays for the OpenAPI schema: the same checks in the
same order (the input boundary, the key, then the body), the same errors.
"""

from __future__ import annotations

import email.message
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from openbailian.api.boundary import PARSED_BODY_KEY, ParsedBody
from openbailian.errors import InvalidParameter, RequestTooLarge, invalid_input
from openbailian.inputs import DEFAULT_MAX_JSON_DEPTH, parse_json

__all__ = ["read_json_body", "body_as"]

M = TypeVar("M", bound=BaseModel)


async def read_json_body(request: Request, limit: int, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """The body's JSON value, whatever its content type says (the DashScope SDK's calls)."""
    parsed = request.scope.get("state", {}).get(PARSED_BODY_KEY)
    if isinstance(parsed, ParsedBody) and parsed.size <= limit and parsed.max_depth <= max_depth:
        return parsed.value  # read, parsed and checked by the input boundary already
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"The request body is larger than the {limit}-byte limit")
    return parse_json(bytes(body), max_depth=max_depth)


async def body_as(request: Request, model: type[M], limit: int, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> M:
    """The body as FastAPI hands a route its one pydantic body parameter: JSON when the content
    type says so, otherwise the raw bytes (which the model then refuses); an empty body is a
    missing one."""
    raw = await request.body()
    value: Any = raw
    if not raw:
        raise InvalidParameter("Field required")
    if _declares_json(request.headers.get("content-type")):
        value = await read_json_body(request, limit, max_depth)
    try:
        return model.model_validate(value, from_attributes=True)  # as FastAPI validates, same wording
    except ValidationError as error:
        located = [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()]
        raise invalid_input(RequestValidationError(located)) from None


def _declares_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))
