"""Every way an upload or AddFile is refused: a clear error, and nothing left behind."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tests.files.conftest import add, call, lease, put, shift_clock, upload, wait_final

DATA = b"The quarterly report is due on the 5th.\n"


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def _error(response, status: int, code: str, *words: str) -> None:
    body = response.json()
    assert response.status_code == status, body
    assert body["Success"] is False and body["Code"] == code and body["Status"] == str(status)
    assert body["RequestId"] == response.headers["x-request-id"]
    for word in words:
        assert word in body["Message"], body["Message"]


def test_expired_lease_refuses_the_upload_and_is_swept(live, files, leftovers) -> None:
    before = leftovers.counts()
    grant = lease(live, "r.txt", DATA).json()["Data"]
    shift_clock(files, minutes=16)
    _error(put(live, grant, DATA), 403, "AccessDenied", "expired")
    _until(lambda: leftovers.counts() == before)  # the sweeper removed the lease


def test_md5_mismatch_is_refused_without_bytes_and_the_lease_can_retry(live, leftovers) -> None:
    before = leftovers.counts()
    grant = lease(live, "r.txt", DATA).json()["Data"]
    forged = DATA.replace(b"5th", b"6th")
    _error(put(live, grant, forged), 400, "InvalidParameter", "MD5")
    counts = leftovers.counts()
    assert counts["objects"] == before["objects"] and counts["incoming"] == before["incoming"]
    assert put(live, grant, DATA).status_code == 200  # the real file still goes through
    assert leftovers.counts()["objects"] == before["objects"] + 1


def test_upload_of_another_size_is_refused(live, leftovers) -> None:
    before = leftovers.counts()
    grant = lease(live, "r.txt", DATA).json()["Data"]
    _error(put(live, grant, DATA + b"extra"), 400, "InvalidParameter", "SizeInBytes")
    _error(put(live, grant, DATA[:-3]), 400, "InvalidParameter", "SizeInBytes")
    counts = leftovers.counts()
    assert counts["objects"] == before["objects"] and counts["incoming"] == before["incoming"]


@pytest.mark.parametrize(
    ("name", "size", "limit"),
    [("big.pdf", 100 * 2**20 + 1, "100 MB"), ("big.png", 20 * 2**20 + 1, "20 MB"), ("big.mp4", 512 * 2**20 + 1, "512 MB")],
)
def test_size_over_the_limit_of_its_kind_gets_no_lease(live, leftovers, name, size, limit) -> None:
    before = leftovers.counts()
    _error(lease(live, name, b"x", SizeInBytes=size), 400, "InvalidParameter", limit)
    assert leftovers.counts() == before


def test_unsupported_type_gets_no_lease(live, leftovers) -> None:
    before = leftovers.counts()
    _error(lease(live, "tool.exe", b"MZ"), 400, "InvalidParameter", ".exe", ".pdf")
    _error(lease(live, "r.txt", DATA, Md5="not-an-md5"), 400, "InvalidParameter", "Md5")
    _error(lease(live, "r.txt", DATA, SizeInBytes=0), 400, "InvalidParameter", "SizeInBytes")
    assert leftovers.counts() == before


def test_second_upload_with_one_lease_is_refused(live, leftovers) -> None:
    before = leftovers.counts()
    grant = lease(live, "r.txt", DATA).json()["Data"]
    assert put(live, grant, DATA).status_code == 200
    _error(put(live, grant, DATA), 409, "Conflict", "already been uploaded")
    assert leftovers.counts()["objects"] == before["objects"] + 1


def test_reused_lease_is_refused(live, leftovers) -> None:
    grant = lease(live, "r.txt", DATA).json()["Data"]
    assert put(live, grant, DATA).status_code == 200
    file_id = add(live, grant["FileUploadLeaseId"]).json()["Data"]["FileId"]
    wait_final(live, file_id)
    before = leftovers.counts()
    _error(add(live, grant["FileUploadLeaseId"]), 409, "Conflict", "already used", file_id)
    _error(put(live, grant, DATA), 404, "NotFound", "lease")
    assert leftovers.counts() == before


@pytest.mark.parametrize(
    ("field", "value"), [("CategoryId", "kb-123"), ("CategoryType", "UNSTRUCTURED"), ("CategoryType", None)]
)
def test_wrong_category_says_which(live, leftovers, field, value) -> None:
    before = leftovers.counts()
    _error(lease(live, "r.txt", DATA, **{field: value}), 400, "InvalidParameter", field)
    grant = lease(live, "r.txt", DATA).json()["Data"]
    assert put(live, grant, DATA).status_code == 200
    _error(add(live, grant["FileUploadLeaseId"], **{field: value}), 400, "InvalidParameter", field)
    counts = leftovers.counts()
    assert counts["files"] == before["files"]  # the lease is not spent by a refused AddFile
    added = add(live, grant["FileUploadLeaseId"])
    assert added.status_code == 200
    wait_final(live, added.json()["Data"]["FileId"])  # leaves no processing behind for the next tests


def test_add_file_before_the_upload_is_refused(live) -> None:
    grant = lease(live, "r.txt", DATA).json()["Data"]
    _error(add(live, grant["FileUploadLeaseId"]), 400, "InvalidParameter", "PUT the file")
    _error(add(live, "no-such-lease"), 404, "NotFound", "no-such-lease")


def _stored_for(live, grant) -> list[Path]:
    """What an upload with this lease left: its object and any partial upload. (Counting every
    file of the store instead races with the processing of earlier tests' files, whose working
    copies come and go in incoming/ meanwhile.)"""
    home = live.settings.home
    lease_id = grant["FileUploadLeaseId"]
    return [*(home / "objects").rglob(f"{lease_id}.*"), *(home / "incoming").glob(f"{lease_id}-*")]


def test_forged_or_unsigned_upload_is_refused(live) -> None:
    grant = lease(live, "r.txt", DATA).json()["Data"]
    url = grant["Param"]["Url"]
    headers = grant["Param"]["Headers"]
    _error(live.http.put(url.replace("Signature=", "Signature=0"), content=DATA, headers=headers),
           403, "AccessDenied", "signature")
    _error(live.http.put(url.split("?")[0], content=DATA, headers=headers), 403, "AccessDenied", "not signed")
    _error(live.http.put(url, content=DATA, headers={"Content-Type": "application/octet-stream"}),
           403, "AccessDenied", "X-bailian-extra")
    assert _stored_for(live, grant) == []
    assert put(live, grant, DATA).status_code == 200  # the lease itself was good
    assert len(_stored_for(live, grant)) == 1


def test_foreign_workspace_cannot_use_or_see_files(live) -> None:
    grant = lease(live, "r.txt", DATA, workspace="ws1").json()["Data"]
    assert put(live, grant, DATA).status_code == 200
    _error(add(live, grant["FileUploadLeaseId"], workspace="ws2"), 404, "NotFound", "does not exist")
    file_id = add(live, grant["FileUploadLeaseId"], workspace="ws1").json()["Data"]["FileId"]
    _error(call(live, "DescribeFile", {"FileId": file_id}, "ws2"), 404, "NotFound", "does not exist")
    _error(call(live, "DeleteFile", {"FileId": file_id}, "ws2"), 404, "NotFound", "does not exist")
    assert file_id not in str(call(live, "ListFile", {}, "ws2").json())
    assert wait_final(live, file_id)["Status"] == "FILE_IS_READY"


def test_requests_without_a_key_or_with_bad_json_use_the_envelope(live) -> None:
    response = live.http.post("/manage/v1/files/DescribeFile", json={"FileId": "x"})
    _error(response, 401, "InvalidApiKey")
    response = live.http.post("/manage/v1/files/DescribeFile", json={}, headers=live.auth())
    _error(response, 400, "InvalidParameter", "FileId")


def test_expired_file_loses_bytes_and_index(live, files, leftovers) -> None:
    before = leftovers.counts()
    file_id = upload(live, "memo.txt", DATA)
    assert wait_final(live, file_id)["Status"] == "FILE_IS_READY"
    assert leftovers.counts()["chunks"] > before["chunks"]
    shift_clock(files, days=7, minutes=1)
    describe = lambda: call(live, "DescribeFile", {"FileId": file_id}).json()["Data"]  # noqa: E731
    _until(lambda: describe()["Status"] == "FILE_EXPIRED")
    assert "7 days" in describe()["FailureReason"]
    # A week later every file of this module has expired, and every stale lease is gone:
    # no bytes, no pipeline documents, no chunks remain; the file rows stay to say why.
    _until(lambda: leftovers.counts()["leases"] == 0)
    after = leftovers.counts()
    assert after == {**after, "objects": 0, "incoming": 0, "documents": 0, "chunks": 0}
    assert after["files"] == before["files"] + 1


def test_upload_never_added_is_dropped_after_12_hours(live, files, leftovers) -> None:
    before = leftovers.counts()
    grant = lease(live, "r.txt", DATA).json()["Data"]
    assert put(live, grant, DATA).status_code == 200
    assert leftovers.counts()["objects"] == before["objects"] + 1
    shift_clock(files, hours=12, minutes=1)
    _until(lambda: leftovers.counts() == before)
    _error(add(live, grant["FileUploadLeaseId"]), 404, "NotFound")


def test_md5_is_case_insensitive(live) -> None:
    grant = lease(live, "r.txt", DATA, Md5=hashlib.md5(DATA).hexdigest().upper()).json()["Data"]
    assert put(live, grant, DATA).status_code == 200
