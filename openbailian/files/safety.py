"""The safety check: what a file really is, judged by its bytes, not its name.

Refused: executables and scripts; content whose sniffed type does not belong
to the declared kind (a ``.pdf`` that is a zip, a ``.png`` that is an ELF);
archive bombs (an Office file is a zip: every member is inflated with a cap on
the total size and on the compression ratio); image bombs (too many pixels);
and text containing a term of the configured blocklist.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import filetype

from openbailian.config import Settings
from openbailian.errors import InvalidParameter, UnsafeFile
from openbailian.files.formats import FileKind, extension_of, rule_for

__all__ = ["SafetyLimits", "UnsafeFile", "check_file", "check_document", "check_text"]

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .doc .xls .ppt .wps
EXECUTABLE_MAGIC = (
    b"MZ",  # Windows PE
    b"\x7fELF",
    b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",  # Mach-O
    b"\xca\xfe\xba\xbe",  # Mach-O fat / Java class
    b"#!",  # scripts
    b"\x00asm",
    b"dex\n",
)
EXECUTABLE_NAMES = (".exe", ".dll", ".so", ".dylib", ".bat", ".cmd", ".com", ".scr", ".msi",
                    ".ps1", ".vbs", ".jar", ".sh", ".elf", ".bin")
OOXML = {"docx", "xlsx", "pptx"}
SNIFFED_OK: dict[str, set[str]] = {
    "pdf": {"pdf"},
    "docx": {"docx", "zip"},
    "xlsx": {"xlsx", "zip"},
    "pptx": {"pptx", "zip"},
    "png": {"png", "apng"},
    "jpg": {"jpg"},
    "jpeg": {"jpg"},
    "bmp": {"bmp"},
    "gif": {"gif"},
}
MEDIA_TYPES = {
    "aac", "mp3", "m4a", "ogg", "flac", "wav", "amr", "mp4", "m4v", "mkv", "mov", "avi", "wmv",
    "mpg", "webm", "flv", "3gp",
}
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    max_zip_ratio: float = 100.0
    max_unzipped_bytes: int = 1024 * 1024 * 1024
    max_zip_members: int = 10_000
    max_image_pixels: int = 80_000_000
    blocklist: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> SafetyLimits:
        """The limits the operator set (``OPENBAILIAN_FILES_MAX_ZIP_*``, …): session files and
        knowledge documents are held to the same ones."""
        return cls(
            max_zip_ratio=settings.files_max_zip_ratio,
            max_unzipped_bytes=settings.files_max_unzipped_bytes,
            max_zip_members=settings.files_max_zip_members,
            blocklist=tuple(settings.files_content_blocklist),
        )


def check_file(path: Path, file_name: str, limits: SafetyLimits) -> str:
    """Check the bytes at ``path`` against the declared ``file_name``; the sniffed type."""
    return _check(path, extension_of(file_name), rule_for(file_name).kind, limits)


def check_document(path: Path, file_name: str, limits: SafetyLimits) -> str:
    """The same checks for a knowledge-base document, whose types (``.html``, ``.csv``,
    ``.json``…) go beyond the session-file formats: those are held to the executable
    check; the types both accept get every check (sniffing, archive and image bombs)."""
    extension = extension_of(file_name)
    try:
        kind: FileKind | None = rule_for(file_name).kind
    except InvalidParameter:
        kind = None
    return _check(path, extension, kind, limits)


def _check(path: Path, extension: str, kind: FileKind | None, limits: SafetyLimits) -> str:
    with path.open("rb") as handle:
        head = handle.read(8192)
    if not head:
        raise UnsafeFile("The file is empty")
    if head.startswith(EXECUTABLE_MAGIC):
        raise UnsafeFile("The file is an executable or a script, which is never accepted")
    guessed = filetype.guess(head)
    sniffed = guessed.extension if guessed else ""
    if sniffed in {"exe", "elf", "wasm", "crx", "rpm", "deb"}:
        raise UnsafeFile(f"The file is an executable ({sniffed}), which is never accepted")
    if kind is not None:
        _check_kind(extension, kind, sniffed, head)
    elif sniffed == "zip" or head.startswith(b"PK\x03\x04"):
        _check_zip(path, limits)  # an archive under another name still may not be a bomb
    if extension in OOXML:
        _check_zip(path, limits)
    if kind is FileKind.IMAGE:
        _check_image(path, limits)
    return sniffed or ("ole" if head.startswith(OLE_MAGIC) else "text")


def _check_kind(extension: str, kind: FileKind, sniffed: str, head: bytes) -> None:
    def mismatch() -> UnsafeFile:
        what = f"a '{sniffed}' file" if sniffed else "something else"
        return UnsafeFile(f"The content is {what}, not the '.{extension}' its name says")

    if extension in SNIFFED_OK:
        if sniffed not in SNIFFED_OK[extension]:
            raise mismatch()
    elif extension in {"doc", "xls", "ppt", "wps"}:
        if not head.startswith(OLE_MAGIC):
            raise mismatch()
    elif extension in {"md", "txt"}:
        if sniffed or b"\x00" in head or not _is_text(head):
            raise UnsafeFile(f"The content is not text, not the '.{extension}' its name says")
    elif kind in {FileKind.AUDIO, FileKind.VIDEO}:
        if sniffed not in MEDIA_TYPES:
            raise UnsafeFile(f"The content is not audio or video, not the '.{extension}' its name says")


def _is_text(head: bytes) -> bool:
    for encoding in ("utf-8", "gb18030"):
        try:
            head.decode(encoding)
            return True
        except UnicodeDecodeError as error:
            # A multi-byte character cut at the end of the sample is fine.
            if error.start >= len(head) - 4:
                return True
    return False


def _check_zip(path: Path, limits: SafetyLimits) -> None:
    """Inflate every member with caps: declared sizes may lie, so count real bytes."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UnsafeFile("The file is not a valid Office (zip) document") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_zip_members:
            raise UnsafeFile(f"The archive has {len(members)} members, more than {limits.max_zip_members}")
        compressed = max(1, sum(m.compress_size for m in members))
        total = 0
        for member in members:
            if member.filename.lower().endswith(EXECUTABLE_NAMES):
                raise UnsafeFile(f"The document embeds an executable ({member.filename})")
            try:
                with archive.open(member) as stream:
                    while chunk := stream.read(_CHUNK):
                        total += len(chunk)
                        if total > limits.max_unzipped_bytes:
                            raise UnsafeFile(
                                "Decompression bomb: the document inflates past "
                                f"{limits.max_unzipped_bytes} bytes"
                            )
                        if total / compressed > limits.max_zip_ratio and total > _CHUNK:
                            raise UnsafeFile(
                                "Decompression bomb: the document inflates more than "
                                f"{limits.max_zip_ratio:g} times its size"
                            )
            except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as error:
                raise UnsafeFile(f"The document is corrupt: {error}") from None


def _check_image(path: Path, limits: SafetyLimits) -> None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as error:  # noqa: BLE001 - any decoder error means "not a usable image"
        raise UnsafeFile(f"The image cannot be read: {error}") from None
    if width * height > limits.max_image_pixels:
        raise UnsafeFile(
            f"Decompression bomb: the image is {width}x{height} pixels, "
            f"more than {limits.max_image_pixels}"
        )


def check_text(text: str, limits: SafetyLimits) -> None:
    lowered = text.lower()
    for term in limits.blocklist:
        if term and term.lower() in lowered:
            raise UnsafeFile(f"The content contains a blocked term ('{term}')")
