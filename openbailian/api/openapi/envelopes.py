"""The three response envelopes of the Bailian OpenAPI, for successes and errors.

- ``DATACENTER`` (datacenter and index operations): ``{RequestId, Success, Code, Message,
  Status, Data}``; ``Status`` is the HTTP status as a string.
- ``BARE`` (memory and prompt-template operations): the operation's own lower camel fields
  beside ``requestId``; an error is ``{requestId, code, message}`` (+ ``Code``, ``Message``,
  ``RequestId``, which every SDK reads first).
- ``AGENTS`` (application operations): ``{requestId, success, code, message,
  httpStatusCode, data}``.

Every error names ``Code``, ``Message`` and ``RequestId`` (the SDKs read
``Code|code``, ``Message|message``, ``RequestId|requestId``); throttling also sends
``x-acs-retry-after``. Status and code come from ``openbailian.api.errors.error_status_and_code``,
the one error table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from openbailian import errors
from openbailian.api.errors import error_status_and_code, request_id_of

__all__ = ["Envelope", "envelope_route", "ok", "error_response", "validation_error"]

logger = logging.getLogger("openbailian.api")




class Envelope(Enum):
    DATACENTER = "datacenter"
    BARE = "bare"
    AGENTS = "agents"


def ok(request: Request, envelope: Envelope, data: Any = None, **fields: Any) -> JSONResponse:
    """A 200 in ``envelope``: ``data`` is the ``Data``/``data`` member (DATACENTER, AGENTS);
    for BARE the ``fields`` are the body beside ``requestId``."""
    request_id = request_id_of(request)
    if envelope is Envelope.DATACENTER:
        body: dict[str, Any] = {
            "RequestId": request_id,
            "Success": True,
            "Code": "Success",
            "Message": "",
            "Status": "200",
            "Data": data,
        }
    elif envelope is Envelope.AGENTS:
        body = {
            "requestId": request_id,
            "success": True,
            "code": "Success",
            "message": "",
            "httpStatusCode": "200",
            "data": data,
        }
    else:
        body = {"requestId": request_id, **fields}
    return JSONResponse(body, status_code=200)


def _error_body(envelope: Envelope, status: int, code: str, message: str, request_id: str) -> dict[str, Any]:
    upper = {"Code": code, "Message": message, "RequestId": request_id}
    if envelope is Envelope.DATACENTER:
        return {**upper, "Success": False, "Status": str(status), "Data": None}
    lower = {"code": code, "message": message, "requestId": request_id}
    if envelope is Envelope.AGENTS:
        return {**lower, "success": False, "httpStatusCode": str(status), "data": None, **upper}
    return {**lower, **upper}


def error_response(request: Request, envelope: Envelope, error: BaseException) -> JSONResponse:
    """Any exception as an error of ``envelope``, mapped by the one error table."""
    status, code, message = error_status_and_code(error)  # Starlette's HTTP errors too
    if status >= 500:
        logger.error("request %s failed: %r", request_id_of(request), error, exc_info=error)
    headers = {}
    if isinstance(error, errors.RateLimited):
        headers["x-acs-retry-after"] = str(error.retry_after)
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(
        _error_body(envelope, status, code, message, request_id_of(request)),
        status_code=status,
        headers=headers,
    )


def validation_error(error: RequestValidationError) -> errors.InvalidParameter:
    return errors.invalid_input(error)


def envelope_route(envelope: Envelope) -> type[APIRoute]:
    """A route class whose every error (authentication, parameters, domain) leaves in ``envelope``."""

    class EnvelopeRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def envelope_errors(request: Request) -> Response:
                try:
                    return await handler(request)
                except RequestValidationError as error:
                    return error_response(request, envelope, validation_error(error))
                except Exception as error:  # noqa: BLE001 - mapped like every other error
                    return error_response(request, envelope, error)

            return envelope_errors

    EnvelopeRoute.__name__ = f"{envelope.name.title()}Route"
    return EnvelopeRoute
