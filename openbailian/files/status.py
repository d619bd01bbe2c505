"""The status machine of a session file, with the seed's names.

INIT → SAFE_CHECKING (type, archive bombs, executables) → PARSING → PARSE_SUCCESS
→ SAFE_CHECKING (content blocklist) → INDEX_BUILDING → INDEX_BUILD_SUCCESS →
FILE_IS_READY. Failures end in SAFE_CHECK_FAILED, PARSE_FAILED or
INDEX_BUILDING_FAILED with a reason; FILE_EXPIRED after the time to live (its
bytes and index entries are gone; INDEX_DELETED is shown while they are removed).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FileStatus", "FAILED", "FINAL", "IN_PROGRESS"]


class FileStatus(StrEnum):
    INIT = "INIT"
    PARSING = "PARSING"
    PARSE_SUCCESS = "PARSE_SUCCESS"
    PARSE_FAILED = "PARSE_FAILED"
    SAFE_CHECKING = "SAFE_CHECKING"
    SAFE_CHECK_FAILED = "SAFE_CHECK_FAILED"
    INDEX_BUILDING = "INDEX_BUILDING"
    INDEX_BUILD_SUCCESS = "INDEX_BUILD_SUCCESS"
    INDEX_BUILDING_FAILED = "INDEX_BUILDING_FAILED"
    INDEX_DELETED = "INDEX_DELETED"
    FILE_IS_READY = "FILE_IS_READY"
    FILE_EXPIRED = "FILE_EXPIRED"


FAILED = frozenset(
    {FileStatus.PARSE_FAILED, FileStatus.SAFE_CHECK_FAILED, FileStatus.INDEX_BUILDING_FAILED}
)
FINAL = FAILED | {FileStatus.FILE_IS_READY, FileStatus.FILE_EXPIRED}
# Work a restarted server picks up again.
IN_PROGRESS = frozenset(
    {
        FileStatus.INIT,
        FileStatus.SAFE_CHECKING,
        FileStatus.PARSING,
        FileStatus.PARSE_SUCCESS,
        FileStatus.INDEX_BUILDING,
        FileStatus.INDEX_BUILD_SUCCESS,
    }
)
