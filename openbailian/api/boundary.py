"""The input boundary: every request's size, path, query string and body are checked here.

:class:`InputBoundary` (run by ``api/middleware.py``'s one layer) never writes a response:
it records a violation (a domain error, ``RequestTooLarge`` or ``InvalidParameter``) and
raises it where the request is read — from ``receive`` while a route reads its body, and from the app-wide dependency
:func:`enforce_input_boundary` before any route runs — so each face renders it in its own
shape (the DashScope body, the OpenAPI envelope).

Bodies are limited per route family (:class:`BodyLimits`), on ``Content-Length`` and
while reading: JSON and form bodies are read into memory up to their limit and checked
whole (:mod:`openbailian.inputs`); multipart and binary bodies stream through a counter
that stops them at their limit, before the multipart parser spools more to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message as EmailMessage
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.types import Message, Receive, Scope

from openbailian.config import Settings
from openbailian.errors import InvalidParameter, OpenBailianError, RequestTooLarge
from openbailian.inputs import check_text, check_url_encoded, decode_utf8, parse_json

__all__ = ["BodyLimits", "InputBoundary", "enforce_input_boundary", "VIOLATION_KEY", "PARSED_BODY_KEY", "ParsedBody"]

VIOLATION_KEY = "input_violation"
PARSED_BODY_KEY = "parsed_json_body"  # the JSON body as checked here, for the route to reuse
UPLOAD_PATH_PART = "/files/upload/"


@dataclass(frozen=True, slots=True)
class BodyLimits:
    call: int  # /api/v1 JSON bodies (the completion call)
    manage: int  # other JSON and form bodies (/manage/v1, the OpenAPI face)
    multipart: int  # multipart/form-data bodies (document uploads)
    upload: int  # signed upload URLs (PUT …/files/upload/{lease})
    max_json_depth: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        return cls(
            call=settings.max_body_bytes,
            manage=settings.manage_max_body_bytes,
            multipart=settings.multipart_max_body_bytes,
            upload=settings.upload_max_body_bytes,
            max_json_depth=settings.max_json_depth,
        )

    def for_request(self, path: str, media: str) -> tuple[int, str]:
        """(limit, family) of a request to ``path`` with this media type."""
        if UPLOAD_PATH_PART in path:
            return self.upload, "upload"
        if media == "multipart/form-data":
            return self.multipart, "multipart"
        if path.startswith("/api/"):
            return self.call, "call"
        return self.manage, "manage"


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A JSON body this boundary read whole and checked: its size, the depth it was checked
    to, and its value (the route need not parse it again)."""

    size: int
    max_depth: int
    value: Any


_MEDIA_TYPES: dict[bytes, str] = {}  # Content-Type header → media type, a few distinct values
_MEDIA_TYPES_KEPT = 256


def _media_type(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = _MEDIA_TYPES.get(value)
            if media is None:
                media = _parse_media_type(value)
                if len(_MEDIA_TYPES) < _MEDIA_TYPES_KEPT:
                    _MEDIA_TYPES[value] = media
            return media
    return ""


def _parse_media_type(value: bytes) -> str:
    if not value.strip():
        return ""
    message = EmailMessage()
    message["content-type"] = value.decode("latin-1")
    return message.get_content_type()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _buffered(media: str) -> bool:
    """JSON (declared or not) and form bodies are checked whole; others stream."""
    return (
        media in ("", "application/json", "application/x-www-form-urlencoded")
        or media.endswith("+json")
        or media.startswith("text/")
    )


def _check_location(scope: Scope) -> None:
    raw_path = scope.get("raw_path")
    if raw_path is not None and raw_path.isascii() and b"%" not in raw_path and b"\x00" not in raw_path:
        pass  # nothing to decode: valid as it is
    elif raw_path is not None:
        decode_utf8(unquote_to_bytes(raw_path.split(b"?", 1)[0]), "The URL path")
    else:
        check_text(scope.get("path", ""), "The URL path")
    check_url_encoded(scope.get("query_string", b""), "The query string")


class InputBoundary:
    def __init__(self, limits: BodyLimits) -> None:
        self.limits = limits

    async def guard(self, scope: Scope, state: dict[str, Any], receive: Receive) -> Receive:
        """The ``receive`` the app reads the request through; a violation found now is kept
        in ``state`` (and raised by that ``receive``)."""
        media = _media_type(scope)
        limit, family = self.limits.for_request(scope.get("path", ""), media)
        try:
            _check_location(scope)
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise _too_large(limit, family)
            if _buffered(media):
                receive = await self._read_and_check(receive, media, limit, family, state)
            else:
                receive = _counting(receive, limit, family)
        except OpenBailianError as violation:
            state[VIOLATION_KEY] = violation
            receive = _raising(violation)
        return receive

    async def _read_and_check(
        self, receive: Receive, media: str, limit: int, family: str, state: dict[str, Any]
    ) -> Receive:
        data = await _read_whole(receive, limit, family)
        if data:
            if media == "application/x-www-form-urlencoded":
                check_url_encoded(data, "The form body")
            else:
                value = parse_json(data, max_depth=self.limits.max_json_depth)
                state[PARSED_BODY_KEY] = ParsedBody(len(data), self.limits.max_json_depth, value)
        return _replaying(data, receive)


async def _read_whole(receive: Receive, limit: int, family: str) -> bytes:
    """The body, stopped at ``limit`` (a body in one message, the usual case, is not copied)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidParameter("The client went away while sending the request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, family)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int, family: str) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than the {limit}-byte limit of {family} requests")


def _replaying(data: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await receive()  # after the body: the disconnect of the client

    return replay


def _counting(receive: Receive, limit: int, family: str) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit, family)
        return message

    return counted


def _raising(violation: OpenBailianError) -> Receive:
    async def refuse() -> Message:
        raise violation

    return refuse


async def enforce_input_boundary(request: Request) -> None:
    """App-wide dependency: a recorded violation fails the request before the route runs;
    the text fields and file names of a parsed multipart form are checked too."""
    violation = request.scope.get("state", {}).get(VIOLATION_KEY)
    if violation is not None:
        raise violation
    form = getattr(request, "_form", None)  # parsed by FastAPI before dependencies run
    if form is not None:
        for name, value in form.multi_items():
            check_text(name, "A form field name")
            if isinstance(value, UploadFile):
                check_text(value.filename or "", f"The file name of form field '{name}'")
            else:
                check_text(value, f"Form field '{name}'")
