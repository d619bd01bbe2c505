"""The parsers of session files: a knowledge base's (``STANDARD``) plus the session-only
types, images (OCR) and audio/video (speech to text). Used for the session files' own
documents and call files only; a knowledge base keeps ``STANDARD``."""

from __future__ import annotations

from pathlib import Path

from openbailian.config import Settings
from openbailian.files.formats import FORMATS, FileKind
from openbailian.files.ocr import parse_image
from openbailian.files.transcribe import transcriber_parser
from openbailian.knowledge.parse import STANDARD, ParsedDocument, ParseError, Parser, Parsers

__all__ = ["session_parsers"]


def _ocr_disabled(_path: Path) -> ParsedDocument:
    raise ParseError("OCR of images is turned off on this server (OPENBAILIAN_FILES_OCR=false)")


def session_parsers(settings: Settings) -> Parsers:
    media = transcriber_parser(settings)
    extra: dict[str, Parser] = {}
    for rule in FORMATS:
        for extension in rule.extensions:
            if rule.kind is FileKind.IMAGE:
                extra[f".{extension}"] = parse_image if settings.files_ocr else _ocr_disabled
            elif rule.kind in {FileKind.AUDIO, FileKind.VIDEO}:
                extra[f".{extension}"] = media
    return STANDARD.with_parsers(extra)
