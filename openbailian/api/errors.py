"""One table from domain errors to (HTTP status, DashScope code), and the handlers.

Every error leaves the server as ``{"code", "message", "request_id"}``.
``docs/errors.md`` documents this table; keep the two in step.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openbailian import errors
from openbailian.providers.base import ModelError, ModelTimeout, ModelUnavailable

__all__ = ["ERROR_TABLE", "error_status_and_code", "error_body", "install_error_handlers"]

logger = logging.getLogger("openbailian.api")

# Most specific first: the first matching class wins.
ERROR_TABLE: list[tuple[type[BaseException], int, str]] = [
    (errors.ModelNotFound, 400, "InvalidParameter.Model"),
    (errors.InvalidParameter, 400, "InvalidParameter"),
    (errors.SignatureMismatch, 401, "SignatureDoesNotMatch"),
    (errors.SignatureExpired, 401, "InvalidTimeStamp.Expired"),
    (errors.SignatureNonceUsed, 401, "SignatureNonceUsed"),
    (errors.InvalidApiKey, 401, "InvalidApiKey"),
    (errors.WorkspaceAccessDenied, 403, "Workspace.AccessDenied"),
    (errors.AccessDenied, 403, "AccessDenied"),
    (errors.AppNotFound, 404, "AppNotFound"),
    (errors.SessionNotFound, 404, "SessionNotFound"),
    (errors.WorkspaceNotFound, 404, "WorkspaceNotFound"),
    (errors.MemoryNotFound, 404, "MemoryNotFound"),
    (errors.PluginNotFound, 404, "PluginNotFound"),
    (errors.PromptTemplateNotFound, 404, "PromptTemplateNotFound"),
    (errors.KnowledgeBaseNotFound, 404, "Index.NotFound"),
    (errors.KnowledgeFileNotFound, 404, "Index.FileNotFound"),
    (errors.NotFound, 404, "NotFound"),
    (errors.AppNotPublished, 400, "AppNotPublished"),
    (errors.Conflict, 409, "Conflict"),
    (errors.RequestTooLarge, 413, "RequestTooLarge"),
    (errors.RateLimited, 429, "Throttling.RateQuota"),
    (ModelTimeout, 504, "ModelServiceTimeout"),
    (ModelUnavailable, 503, "ModelServiceUnavailable"),
    (ModelError, 500, "ModelServiceError"),
]


HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestTooLarge"}


def error_status_and_code(error: BaseException) -> tuple[int, str, str]:
    """(HTTP status, code, message) for any exception; unknown ones are InternalError.

    Starlette's HTTP errors keep their status; one raised because reading the body
    failed (FastAPI wraps whatever the body reader raised) is the domain error behind it.
    """
    if isinstance(error, StarletteHTTPException):
        if isinstance(error.__cause__, errors.OpenBailianError):
            return error_status_and_code(error.__cause__)
        code = HTTP_CODES.get(error.status_code, "InvalidRequest" if error.status_code < 500 else "InternalError")
        return error.status_code, code, str(error.detail)
    for error_type, status, code in ERROR_TABLE:
        if isinstance(error, error_type):
            return status, code, str(getattr(error, "message", None) or error)
    return 500, "InternalError", "An internal error occurred; see the server log for this request_id"


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


def _validation_message(error: RequestValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    return f"{first['msg']}: {where}" if where else first["msg"]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.OpenBailianError)
    async def _domain(request: Request, error: errors.OpenBailianError) -> JSONResponse:
        return error_response(request, error)

    @app.exception_handler(ModelError)
    async def _model(request: Request, error: ModelError) -> JSONResponse:
        return error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(request, errors.InvalidParameter(_validation_message(error)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(request, error)

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        return error_response(request, error)
