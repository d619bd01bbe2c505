"""Data at rest is private to its owner, whatever the umask: the home folder and the
folders of stored files 0700, the SQLite database (and its -wal/-shm), documents and
objects 0600. SQLite gives its -wal and -shm files the mode of the database file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_dir", "private_file", "private_sqlite", "DIR_MODE", "FILE_MODE"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` made (with its missing parents) and set to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    os.chmod(path, FILE_MODE)
    return path


def private_sqlite(database: Path) -> None:
    """Create the database file 0600 before SQLite does (it would follow the umask);
    an existing one, and its -wal/-shm/-journal, are set to 0600."""
    database.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for suffix in ("", "-wal", "-shm", "-journal", ".migrate-lock"):
        candidate = database.with_name(database.name + suffix)
        if candidate.exists():
            os.chmod(candidate, FILE_MODE)
