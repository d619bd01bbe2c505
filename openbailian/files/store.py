"""Where file bytes live: an :class:`ObjectStore`, local disk by default.

The S3-compatible store (``openbailian/files/s3.py``) implements the same four
methods. Keys are relative, ``/``-separated paths such as
``session/<workspace>/<lease>.pdf`` or ``knowledge/files/<base>/<document>.pdf``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from openbailian.storage.private import private_dir

__all__ = ["ObjectStore", "LocalObjectStore", "check_key"]

_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_FOLDER_ATTEMPTS = 50
T = TypeVar("T")


class ObjectStore(Protocol):
    def put(self, key: str, source: BinaryIO) -> None:
        """Store everything readable from ``source`` under ``key`` (replacing it)."""

    def put_file(self, key: str, path: Path) -> None:
        """Store a local file under ``key``, taking it over (the file is gone afterwards)."""

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    def exists(self, key: str) -> bool: ...


def check_key(key: str) -> str:
    """The key itself, if it is a relative ``/``-separated path without ``..``."""
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid object key: {key!r}")
    return key


class LocalObjectStore:
    """Objects as files under ``root``; writes go through a temporary file and a rename."""

    def __init__(self, root: Path) -> None:
        self.root = private_dir(root)  # may be outside the home folder: private itself

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, source: BinaryIO) -> None:
        target = self.path(key)
        fd, temporary = _in_folder_of(target, lambda: tempfile.mkstemp(dir=target.parent, prefix=".part-"))
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        """Move a local file in (cheap on the same disk)."""
        target = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(path)
        _in_folder_of(target, lambda: shutil.move(path, target))

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        # Drop now-empty folders up to the root, so nothing is left behind.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()  # only ever removes an empty folder
            except OSError:  # not empty (perhaps a concurrent write), or already gone
                return
            parent = parent.parent

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()


def _in_folder_of(target: Path, create: Callable[[], T]) -> T:
    """Create something in ``target``'s folder, making the folder first.

    A concurrent ``delete`` may remove the folder (when it looked empty) between
    the ``mkdir`` and the creation; then make it again.
    """
    for attempt in range(_FOLDER_ATTEMPTS):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            return create()
        except (FileNotFoundError, FileExistsError):  # mkdir's own race with a vanishing parent
            if attempt == _FOLDER_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@contextmanager
def materialized(store: ObjectStore, key: str, suffix: str) -> Iterator[Path]:
    """A local file holding the object, for parsers that need a path (a temp copy unless local)."""
    if isinstance(store, LocalObjectStore):
        yield store.path(key)
        return
    fd, name = tempfile.mkstemp(suffix=suffix)
    try:
        download = getattr(store, "download", None)
        if download is not None:  # streamed (the S3 store)
            os.close(fd)
            download(key, Path(name))
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(store.get(key))
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


__all__ += ["materialized"]
