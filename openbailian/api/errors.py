"""Domain errors to (HTTP status, code, message), and the DashScope-shaped handlers.

Every face calls :func:`error_status_and_code`; the status and code of an error
are its class's (``openbailian/errors.py``: class attributes, inherited down the
tree). This face renders ``{"code", "message", "request_id"}``; the OpenAPI and
session-file envelopes render the same triple their way. ``docs/errors.md``
documents the codes; ``tests/test_docs.py`` keeps the two in step.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openbailian import errors

__all__ = ["ERROR_TABLE", "error_status_and_code", "error_body", "install_error_handlers"]

logger = logging.getLogger("openbailian.api")

INTERNAL_MESSAGE = "An internal error occurred; see the server log for this request_id"

# (class, status, code) of every class of the tree, parents first: what docs/errors.md documents.
ERROR_TABLE: list[tuple[type[errors.OpenBailianError], int, str]] = [
    (cls, cls.status, cls.code) for cls in errors.error_classes() if cls.code != "InternalError"
]


HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestTooLarge"}


def error_status_and_code(error: BaseException) -> tuple[int, str, str]:
    """(HTTP status, code, message) for any exception; anything that is not a domain error,
    and a domain error whose code is ``InternalError``, is an InternalError without details.

    Starlette's HTTP errors keep their status; one raised because reading the body
    failed (FastAPI wraps whatever the body reader raised) is the domain error behind it.
    """
    if isinstance(error, StarletteHTTPException):
        if isinstance(error.__cause__, errors.OpenBailianError):
            return error_status_and_code(error.__cause__)
        code = HTTP_CODES.get(error.status_code, "InvalidRequest" if error.status_code < 500 else "InternalError")
        return error.status_code, code, str(error.detail)
    if isinstance(error, RequestValidationError):
        error = errors.invalid_input(error)
    if isinstance(error, errors.OpenBailianError) and error.code != "InternalError":
        return error.status, error.code, error.message
    return 500, "InternalError", INTERNAL_MESSAGE


def error_body(code: str, message: str, request_id: str) -> dict[str, str]:
    return {"code": code, "message": message, "request_id": request_id}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "")


def _body_for(request: Request, code: str, message: str) -> dict[str, str]:
    """The DashScope error body; a Bailian OpenAPI SDK (it sends ``x-acs-action``) also gets the
    ``Code``/``Message``/``RequestId``/``requestId`` it reads (an unknown path, a body refused
    before any route: the OpenAPI routes render their own envelopes)."""
    body = error_body(code, message, request_id_of(request))
    if "x-acs-action" in request.headers:
        rid = body["request_id"]
        body.update({"Code": code, "Message": message, "RequestId": rid, "requestId": rid})
    return body


def error_response(request: Request, error: BaseException) -> JSONResponse:
    status, code, message = error_status_and_code(error)
    if status >= 500:
        logger.error("request %s failed: %r", request_id_of(request), error, exc_info=error)
    headers = {}
    if isinstance(error, errors.RateLimited):
        headers["Retry-After"] = str(error.retry_after)
        headers["x-acs-retry-after"] = str(error.retry_after)
    return JSONResponse(_body_for(request, code, message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.OpenBailianError)
    async def _domain(request: Request, error: errors.OpenBailianError) -> JSONResponse:
        return error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(request, error)

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        return error_response(request, error)
