"""The object stores: the local one under concurrent writes and deletes sharing folders, and
the port's contract for both the local disk and S3 (moto's server)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openbailian.files.store import LocalObjectStore, ObjectStore, materialized
from tests.files.s3support import s3_settings


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


# ---------------------------------------------------------------- the port's contract, both stores


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    from openbailian.config import Settings
    from openbailian.files.s3 import S3ObjectStore

    endpoint = request.getfixturevalue("s3_endpoint")
    prefix = f"contract-{tmp_path.name}"
    return S3ObjectStore.from_settings(Settings(home=tmp_path, **{**s3_settings(endpoint), "s3_prefix": prefix}))


def test_put_get_replace_and_delete(store: ObjectStore, tmp_path: Path) -> None:
    key = "session/ws1/lease-1.txt"
    assert not store.exists(key)
    store.put(key, io.BytesIO(b"first"))
    assert store.exists(key) and store.get(key) == b"first"
    source = tmp_path / "second.bin"
    source.write_bytes(b"second" * 1000)
    store.put_file(key, source)
    assert not source.exists()  # taken over
    assert store.get(key) == b"second" * 1000
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting a missing key is not an error


def test_a_missing_key_reads_as_missing(store: ObjectStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.get("knowledge/files/base/none.pdf")
    with pytest.raises(FileNotFoundError), materialized(store, "knowledge/files/base/none.pdf", ".pdf") as path:
        path.read_bytes()


def test_materialized_gives_a_readable_path(store: ObjectStore) -> None:
    store.put("knowledge/files/b1/d1.md", io.BytesIO("# 标题\n正文".encode()))
    with materialized(store, "knowledge/files/b1/d1.md", ".md") as path:
        assert path.read_text() == "# 标题\n正文" and path.suffix == ".md"


@pytest.mark.parametrize("key", ["../escape", "/absolute", "a//b", "a/../b", "", "sp ace"])
def test_keys_outside_the_store_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, io.BytesIO(b"x"))
    with pytest.raises(ValueError):
        store.exists(key)
