"""Teach the knowledge pipeline's parser the session-only types: images (OCR)
and audio/video (speech to text). Documents use its own parsers unchanged."""

from __future__ import annotations

from openbailian.config import Settings
from openbailian.files.formats import FORMATS, FileKind
from openbailian.files.ocr import parse_image
from openbailian.files.transcribe import transcriber_parser
from openbailian.knowledge.parse import ParsedDocument, ParseError, register_parser

__all__ = ["register_session_parsers"]


def _ocr_disabled(_path: object) -> ParsedDocument:
    raise ParseError("OCR of images is turned off on this server (OPENBAILIAN_FILES_OCR=false)")


def register_session_parsers(settings: Settings) -> None:
    media = transcriber_parser(settings)
    for rule in FORMATS:
        for extension in rule.extensions:
            if rule.kind is FileKind.IMAGE:
                register_parser(f".{extension}", parse_image if settings.files_ocr else _ocr_disabled)
            elif rule.kind in {FileKind.AUDIO, FileKind.VIDEO}:
                register_parser(f".{extension}", media)
