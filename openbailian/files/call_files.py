"""Files a call brings by URL: ``input.image_list`` and ``input.file_list``.

Each URL (``http(s)://`` or ``data:``) is fetched through the plugins' outbound
guard (``tools/outbound.py``: no loopback, private, link-local or metadata
address, checked after DNS and on every redirect; the type checked before the
body is read; whole or refused past the size limit; a timeout), then handled as
a session file of this one call: the same formats and size limits, the same
safety check of the bytes, the same parsers (OCR for images, speech to text for
audio and video) and blocklist. A vision model gets images as images, every
other model their text. Nothing is kept after the call.

Any URL that cannot be used fails the whole call with a 400 naming it, before
the model runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote_to_bytes, urlsplit

from openbailian.engine.augment import Augmentation, CallContext
from openbailian.errors import InvalidParameter
from openbailian.files.formats import FORMATS, FileKind, FormatRule
from openbailian.files.safety import UnsafeFile, check_file, check_text
from openbailian.files.source import files_augmentation
from openbailian.files.system import SessionFiles
from openbailian.files.threads import run_for_call
from openbailian.knowledge.bm25 import BM25Index, terms
from openbailian.knowledge.chunk import Chunk, chunk_document, count_tokens
from openbailian.knowledge.parse import ParseError
from openbailian.knowledge.retrieve import Hit
from openbailian.tools.outbound import AllowList, OutboundError, OutboundGuard, download

__all__ = ["CallFileSource", "CallFile"]

# The media types of each session-file extension (what servers commonly send).
_MEDIA_TYPES = {
    "png": {"image/png"},
    "jpg": {"image/jpeg", "image/jpg", "image/pjpeg"},
    "jpeg": {"image/jpeg", "image/jpg", "image/pjpeg"},
    "bmp": {"image/bmp", "image/x-bmp", "image/x-ms-bmp"},
    "gif": {"image/gif"},
    "pdf": {"application/pdf"},
    "docx": {"application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    "pptx": {"application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    "xlsx": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    "doc": {"application/msword"},
    "ppt": {"application/vnd.ms-powerpoint"},
    "xls": {"application/vnd.ms-excel"},
    "wps": {"application/vnd.ms-works", "application/kswps"},
    "txt": {"text/plain"},
    "md": {"text/markdown", "text/x-markdown"},
}
_PREFERRED = {"image/jpeg": "jpg", "text/plain": "txt"}
# Types that say nothing: the URL's extension decides (object stores often send these).
_GENERIC = {"", "application/octet-stream", "binary/octet-stream", "application/x-download"}
_RULES = {ext: rule for rule in FORMATS for ext in rule.extensions}


@dataclass(frozen=True, slots=True)
class CallFile:
    field: str  # "input.image_list[0]"
    name: str  # a file name whose extension is the file's type
    kind: FileKind
    media_type: str
    data: bytes


class CallFileSource:
    def __init__(
        self,
        files: SessionFiles,
        *,
        guard: OutboundGuard | None = None,
        whole_file_tokens: int = 1500,
        top_k: int = 6,
    ) -> None:
        self.files = files
        settings = files.settings
        self.guard = guard or OutboundGuard(AllowList.parse(settings.outbound_allow))
        self.timeout = settings.call_files_timeout_seconds
        self.max_bytes = settings.call_files_max_bytes
        self.max_files = settings.files_max_per_call
        self.whole_file_tokens = whole_file_tokens
        self.top_k = top_k

    async def gather(self, context: CallContext) -> Augmentation:
        if not context.call.image_urls and not context.call.file_urls:
            return Augmentation()
        self._check_allowed(context)
        wanted = [(f"input.image_list[{n}]", url, True) for n, url in enumerate(context.call.image_urls)]
        wanted += [(f"input.file_list[{n}]", url, False) for n, url in enumerate(context.call.file_urls)]
        results = await asyncio.gather(
            *(self._fetch(field, url, images_only) for field, url, images_only in wanted),
            return_exceptions=True,
        )
        for result in results:  # the first failing URL, in the order the call gave them
            if isinstance(result, BaseException):
                raise result
        fetched = [result for result in results if not isinstance(result, BaseException)]
        images: list[str] = []
        if context.model_accepts_images:
            # A vision model sees the images themselves (checked like any file first).
            pictures = [f for f in fetched if f.kind is FileKind.IMAGE]
            for picture in pictures:
                await run_for_call(self._checked, picture, parse=False)
            images = [_data_url(f) for f in pictures]
            fetched = [f for f in fetched if f.kind is not FileKind.IMAGE]
        hits: list[Hit] = []
        for file in fetched:
            hits += await self._passages(file, context.query)
        return files_augmentation(context, hits, images)

    def _check_allowed(self, context: CallContext) -> None:
        for name, urls in (("image_list", context.call.image_urls), ("file_list", context.call.file_urls)):
            if len(urls) > self.max_files:
                raise InvalidParameter(
                    f"input.{name} has {len(urls)} URLs; at most {self.max_files} are allowed per call"
                )
        reads_text = bool(context.call.file_urls) or not context.model_accepts_images
        if reads_text and not context.config.file_parsing:
            what = "input.file_list" if context.call.file_urls else "input.image_list (for a model that does not read images)"
            raise InvalidParameter(
                f"{what} needs the app's dynamic file parsing switch (file_parsing) on: "
                "turn it on and publish the app"
            )

    # ------------------------------------------------------------ fetching

    async def _fetch(self, field: str, url: str, images_only: bool) -> CallFile:
        shown = _shown(url)
        hint = _extension(urlsplit(url).path) if not url.startswith("data:") else ""
        try:
            if url.startswith("data:"):
                media_type, data = _decode_data_url(url, self.max_bytes)
                rule, extension = self._rule(media_type, "", images_only)
                self._limit(rule, len(data))
            else:
                limits: dict[str, tuple[FormatRule, str]] = {}

                def size_limit(media_type: str) -> int:
                    limits[media_type] = self._rule(media_type, hint, images_only)
                    return min(self.max_bytes, limits[media_type][0].max_bytes)

                got = await download(self.guard, url, size_limit=size_limit, timeout=self.timeout)
                media_type, data = got.media_type, got.data
                rule, extension = limits[media_type]
        except (OutboundError, _Refused) as error:
            raise InvalidParameter(f"{field} ({shown}) cannot be fetched: {error}") from None
        stem = PurePosixPath(urlsplit(url).path).stem if not url.startswith("data:") else ""
        name = f"{stem or field.replace('input.', '')}.{extension}"
        return CallFile(field, name, rule.kind, media_type, data)

    def _rule(self, media_type: str, hint: str, images_only: bool) -> tuple[FormatRule, str]:
        """The session-file rule and extension for this media type (or the URL's extension)."""
        extension = _extension_for(media_type)
        if extension is None and media_type in _GENERIC and hint in _RULES:
            extension = hint
        if extension is None or (images_only and _RULES[extension].kind is not FileKind.IMAGE):
            wanted = "an image (png, jpg, jpeg, bmp, gif)" if images_only else "a session-file type"
            raise _Refused(f"its content type '{media_type or '(none)'}' is not {wanted}")
        return _RULES[extension], extension

    def _limit(self, rule: FormatRule, size: int) -> None:
        limit = min(self.max_bytes, rule.max_bytes)
        if size > limit:
            raise _Refused(f"the file is {size} bytes, more than the {limit}-byte limit")

    # ------------------------------------------------------------ reading

    async def _passages(self, file: CallFile, query: str) -> list[Hit]:
        """The file's text as a session file's: whole when small, else the best chunks for the query."""
        chunks = await run_for_call(self._checked, file, parse=True)
        total = sum(count_tokens(c.text) for c in chunks)
        if total > self.whole_file_tokens:
            chunks = _best(chunks, query, self.top_k)
        return [
            Hit(chunk_id=n, base_id=file.field.split("[")[0].replace("input.", ""), document_id=file.field,
                doc_name=file.name, title=c.title, text=c.text, pages=list(c.pages))
            for n, c in enumerate(chunks)
        ]

    def _checked(self, file: CallFile, *, parse: bool) -> list[Chunk]:
        """The safety check of the bytes, then (``parse``) the text in chunks, blocklist checked."""
        fd, name = tempfile.mkstemp(dir=self.files.incoming_dir, prefix="call-", suffix=Path(file.name).suffix)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(file.data)
            check_file(path, file.name, self.files.limits)
            if not parse:
                return []
            chunks = chunk_document(self.files.parsers.parse(path, name=file.name))
            check_text("\n".join(c.text for c in chunks), self.files.limits)
            return chunks
        except (UnsafeFile, ParseError) as error:
            raise InvalidParameter(f"{file.field} ({file.name}) cannot be used: {error}") from None
        finally:
            path.unlink(missing_ok=True)


class _Refused(Exception):
    """The URL's content is not taken (type or size); the message says why."""


def _best(chunks: list[Chunk], query: str, top_k: int) -> list[Chunk]:
    """The ``top_k`` chunks most about the query (BM25), in the file's order; the first ones without a match."""
    index = BM25Index()
    index.add([terms(c.text) for c in chunks])
    rows = sorted(row for row, _score in index.search(terms(query), top_k))
    return [chunks[row] for row in rows] if rows else chunks[:top_k]


def _extension(path: str) -> str:
    return PurePosixPath(path).suffix.lower().lstrip(".")


def _extension_for(media_type: str) -> str | None:
    if media_type in _PREFERRED:
        return _PREFERRED[media_type]
    for extension, types in _MEDIA_TYPES.items():
        if media_type in types:
            return extension
    guessed = mimetypes.guess_extension(media_type) if media_type not in _GENERIC else None
    extension = (guessed or "").lstrip(".")
    return extension if extension in _RULES else None


def _decode_data_url(url: str, max_bytes: int) -> tuple[str, bytes]:
    header, comma, payload = url[len("data:"):].partition(",")
    if not comma:
        raise _Refused("a data: URL needs a comma before its data")
    params = header.split(";")
    media_type = params[0].strip().lower() or "text/plain"
    if len(payload) * 3 // 4 > max_bytes:
        raise _Refused(f"the file is larger than the {max_bytes}-byte limit")
    if "base64" in (p.strip().lower() for p in params[1:]):
        try:
            return media_type, base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused("its base64 data is not valid") from None
    return media_type, unquote_to_bytes(payload)


def _shown(url: str) -> str:
    """The URL as an error message names it: a data: URL by its header, a long one cut."""
    if url.startswith("data:"):
        return url.split(",", 1)[0][:80] + ",…"
    return url if len(url) <= 200 else url[:200] + "…"


def _data_url(file: CallFile) -> str:
    """As session-file images reach a vision model: the checked bytes, never the URL to fetch again."""
    media_type = file.media_type
    if not media_type.startswith("image/"):
        media_type = mimetypes.types_map.get(Path(file.name).suffix.lower(), "application/octet-stream")
    return f"data:{media_type};base64,{base64.b64encode(file.data).decode()}"
