"""Which files a session accepts, as the seed lists them, and how large each kind may be."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath

from openbailian.errors import InvalidParameter

__all__ = ["FileKind", "FormatRule", "FORMATS", "rule_for", "extension_of"]

MB = 1024 * 1024


class FileKind(StrEnum):
    DOCUMENT = "document"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class FormatRule:
    kind: FileKind
    extensions: frozenset[str]
    max_bytes: int


FORMATS: tuple[FormatRule, ...] = (
    FormatRule(
        FileKind.DOCUMENT,
        frozenset({"doc", "docx", "wps", "ppt", "pptx", "xls", "xlsx", "md", "txt", "pdf"}),
        100 * MB,
    ),
    FormatRule(FileKind.IMAGE, frozenset({"png", "jpg", "jpeg", "bmp", "gif"}), 20 * MB),
    FormatRule(FileKind.VIDEO, frozenset({"mp4", "mkv", "avi", "mov", "wmv"}), 512 * MB),
    FormatRule(
        FileKind.AUDIO,
        frozenset(
            {"aac", "amr", "flac", "flv", "m4a", "mp3", "mpeg", "ogg", "opus", "wav", "webm", "wma"}
        ),
        512 * MB,
    ),
)


def extension_of(file_name: str) -> str:
    return PurePath(file_name).suffix.lower().lstrip(".")


def rule_for(file_name: str) -> FormatRule:
    """The rule for this file name; an unsupported extension is an error naming the allowed ones."""
    extension = extension_of(file_name)
    for rule in FORMATS:
        if extension in rule.extensions:
            return rule
    allowed = " ".join(f".{e}" for rule in FORMATS for e in sorted(rule.extensions))
    shown = f"'.{extension}'" if extension else "no extension"
    raise InvalidParameter(f"FileName has {shown}: session files must be one of {allowed}")


def check_size(file_name: str, size_in_bytes: int) -> FormatRule:
    rule = rule_for(file_name)
    if size_in_bytes <= 0:
        raise InvalidParameter("SizeInBytes must be a positive number of bytes")
    if size_in_bytes > rule.max_bytes:
        raise InvalidParameter(
            f"SizeInBytes {size_in_bytes} is over the {rule.max_bytes // MB} MB limit "
            f"for {rule.kind.value} files"
        )
    return rule


MAX_BYTES = max(rule.max_bytes for rule in FORMATS)  # the largest session file of any kind

__all__ += ["check_size", "MB", "MAX_BYTES"]
