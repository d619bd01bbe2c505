"""The local object store under concurrent writes and deletes sharing folders."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openbailian.files.store import LocalObjectStore


def test_concurrent_puts_and_deletes_in_shared_folders_never_fail(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")

    def churn(worker: int) -> None:
        for round_ in range(300):
            key = f"session/ws1/{worker}-{round_}/data.bin"
            if round_ % 2:
                store.put(key, io.BytesIO(b"x" * 10))
            else:
                source = tmp_path / f"in-{worker}-{round_}"
                source.write_bytes(b"y" * 10)
                store.put_file(key, source)
            assert store.get(key) in {b"x" * 10, b"y" * 10}
            store.delete(key)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(churn, range(8)))  # re-raises the first failure of any worker
    assert list((tmp_path / "objects").iterdir()) == []  # nothing left behind


def test_put_file_of_a_missing_source_is_an_error(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    try:
        store.put_file("files/ws1/a", tmp_path / "missing")
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("a missing source was accepted")
    assert not store.exists("files/ws1/a")
