"""The session-file machinery shared by the server and the CLI: the store, the
signer, the processing of added files, and the sweeper that expires them.

Processing of one file: SAFE_CHECKING (bytes) → indexing through the
``DocumentIndex`` port (``files/ports.py``, implemented by knowledge: PARSING …
INDEX_BUILD_SUCCESS, mirrored onto the file) → SAFE_CHECKING (the parsed text
against the blocklist) → FILE_IS_READY. Work is kept in the
database: a restarted server resumes files that were not finished. Processes
sharing the database claim a file with a lease (renewed while they work, as the
knowledge ingestion does), so each file is processed by one of them at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, select

from openbailian.config import Settings
from openbailian.files.formats import extension_of
from openbailian.files.leases import UploadSigner, load_secret
from openbailian.files.ports import DocumentIndex, StatusCallback
from openbailian.files.safety import SafetyLimits, UnsafeFile, check_file, check_text
from openbailian.files.status import FAILED, IN_PROGRESS, FileStatus
from openbailian.files.store import LocalObjectStore, ObjectStore, materialized
from openbailian.knowledge.parse import Parsers
from openbailian.storage import leases
from openbailian.storage.db import Database
from openbailian.storage.files_models import FileUploadLease, SessionFile
from openbailian.storage.models import utcnow

__all__ = ["SessionFiles", "upload_key"]

logger = logging.getLogger("openbailian.files")

LEASE = timedelta(seconds=120)  # as the knowledge Ingestor's
MAX_ATTEMPTS = 3  # claims of one file before it is failed rather than retried


@dataclass(eq=False)
class SessionFiles:
    settings: Settings
    db: Database
    store: ObjectStore
    signer: UploadSigner
    limits: SafetyLimits
    index: DocumentIndex  # where the files' documents are indexed (knowledge's SessionDocuments)
    parsers: Parsers  # what the files' text is read with (call files parse with them here)
    clock: Callable[[], datetime] = utcnow
    lease: timedelta = LEASE
    # False in an API process without workers: added files wait in the database for a worker.
    schedule_here: bool = True
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _sweeper: asyncio.Task[None] | None = None
    _resumer: asyncio.Task[None] | None = None
    _started: bool = False
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    @classmethod
    def build(
        cls,
        settings: Settings,
        db: Database,
        index: DocumentIndex,
        parsers: Parsers,
        store: ObjectStore | None = None,
    ) -> SessionFiles:
        """Session files of this process; their documents go to ``index``.
        ``store`` defaults to the local disk (``OPENBAILIAN_FILES_STORAGE_DIR``)."""
        root = settings.files_storage_dir or settings.home / "objects"
        return cls(
            settings=settings,
            db=db,
            store=store or LocalObjectStore(Path(root)),
            signer=UploadSigner(load_secret(settings)),
            limits=SafetyLimits.of(settings),
            index=index,
            parsers=parsers,
            lease=timedelta(seconds=settings.worker_lease_seconds),
        )

    @property
    def incoming_dir(self) -> Path:
        path = self.settings.home / "incoming"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------ lifecycle

    async def start(self, *, sweeper: bool = True) -> None:
        """Resume unfinished files nobody holds; run the expiry sweeper in the background (idempotent)."""
        if self._started:
            return
        self._started = True
        await self.resume()
        if sweeper and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())
        if sweeper and self._resumer is None:  # files added through another process
            self._resumer = asyncio.create_task(
                leases.resume_every(self.settings.worker_poll_seconds, self.resume, "session files to process")
            )

    async def resume(self) -> None:
        """Schedule unfinished files nobody holds: after a restart, or another process's crash."""
        async with self.db.session() as session:
            query = select(SessionFile.id).where(_unfinished(), leases.free_at(SessionFile, utcnow()))
            ids = list(await session.scalars(query))
        for file_id in ids:
            self._schedule(file_id)

    async def aclose(self) -> None:
        tasks = [*self._tasks.values(), *(t for t in (self._sweeper, self._resumer) if t)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._sweeper = self._resumer = None
        self._started = False

    def schedule(self, file_id: str) -> None:
        """Process the file in this process, unless processing is left to the workers."""
        if self.schedule_here:
            self._schedule(file_id)

    def _schedule(self, file_id: str) -> None:
        if file_id in self._tasks:
            return
        task = asyncio.create_task(self._process_guarded(file_id))
        self._tasks[file_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(file_id, None))

    async def cancel(self, file_id: str) -> None:
        task = self._tasks.pop(file_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def wait(self, file_id: str) -> None:
        task = self._tasks.get(file_id)
        if task is not None:
            await asyncio.shield(task)

    # ------------------------------------------------------------ processing

    async def _process_guarded(self, file_id: str) -> None:
        async with self._slots:
            await self.process(file_id)

    async def process(self, file_id: str) -> None:
        """Process the file unless it is no longer in progress or another process holds it."""
        held = await self._claim(file_id)
        if held is None:
            return
        # OCR, transcription and indexing cannot renew as they go: renew beside them.
        renewing = asyncio.create_task(leases.keep_renewing(self.db, held, self.lease))
        try:
            await self._process_claimed(file_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a failing file never stops the others
            logger.exception("session file %s failed", file_id)
            await self._set(file_id, FileStatus.INDEX_BUILDING_FAILED, f"Internal error: {error}")
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await leases.release(self.db, held)

    async def _process_claimed(self, file_id: str) -> None:
        row = await self._get(file_id)
        if row is None or row.status not in IN_PROGRESS or row.object_key is None:
            return
        if row.attempts > MAX_ATTEMPTS:
            reason = f"Processing the file was given up after {MAX_ATTEMPTS} attempts"
            await self._fail(row, FileStatus.INDEX_BUILDING_FAILED, reason)
            return
        if row.index_ref is None:
            await self._set(file_id, FileStatus.SAFE_CHECKING)
            try:
                await asyncio.to_thread(self._check_bytes, row)
            except UnsafeFile as error:
                await self._fail(row, FileStatus.SAFE_CHECK_FAILED, str(error))
                return
            copy = await asyncio.to_thread(self._working_copy, row)
            try:
                ref = await self.index.add(row.workspace_id, row.id, row.file_name, copy)
            finally:
                copy.unlink(missing_ok=True)  # moved by the pipeline unless it refused
            if not await self._update(file_id, index_ref=ref, status=FileStatus.PARSING.value):
                await self.index.delete(ref)  # the file was deleted meanwhile
                return
            row = await self._get(file_id)
            assert row is not None
        indexed = await self.index.index(row.index_ref or "", self._mirror(file_id))
        if not indexed.ready:
            status = FileStatus(indexed.status) if indexed.status in FAILED else FileStatus.INDEX_BUILDING_FAILED
            await self._fail(row, status, indexed.reason)
            return
        await self._update(file_id, page_count=indexed.pages, chunk_count=indexed.chunks)
        await self._set(file_id, FileStatus.SAFE_CHECKING)
        try:
            check_text("\n".join(await self.index.texts(row.index_ref or "")), self.limits)
        except UnsafeFile as error:
            await self._fail(row, FileStatus.SAFE_CHECK_FAILED, str(error))
            return
        await self._set(file_id, FileStatus.FILE_IS_READY)

    def _working_copy(self, row: SessionFile) -> Path:
        """A copy for the knowledge pipeline, which takes ownership of (moves) what it gets."""
        fd, name = tempfile.mkstemp(dir=self.incoming_dir, prefix=f"{row.id}-", suffix=f".{row.file_type}")
        with os.fdopen(fd, "wb") as out, materialized(self.store, row.object_key or "", f".{row.file_type}") as path:
            with path.open("rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)
        return Path(name)

    def _check_bytes(self, row: SessionFile) -> None:
        with materialized(self.store, row.object_key or "", f".{row.file_type}") as path:
            check_file(path, row.file_name, self.limits)

    def _mirror(self, file_id: str) -> StatusCallback:
        """Shows the document's statuses (those a file has) on the file as its indexing goes."""

        async def show(status: str) -> None:
            if status in FileStatus.__members__:
                await self._set(file_id, FileStatus(status))

        return show

    async def _fail(self, row: SessionFile, status: FileStatus, reason: str) -> None:
        """A failed file keeps its row (to show why) but no bytes and no index entries."""
        await self.drop_data(row)
        await self._update(row.id, status=status.value, failure_reason=reason, object_key=None, index_ref=None)

    async def drop_data(self, row: SessionFile) -> None:
        if row.index_ref:
            await self.index.delete(row.index_ref)
        if row.object_key:
            await asyncio.to_thread(self.store.delete, row.object_key)

    # ------------------------------------------------------------ claims

    async def _claim(self, file_id: str) -> leases.Claim | None:
        """Take the file's lease; None when it is held, finished or gone."""
        return await leases.claim(self.db, SessionFile, file_id, self.lease, _unfinished())

    # ------------------------------------------------------------ expiry

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
                await self.resume()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the sweeper keeps running
                logger.exception("session file sweep failed")
            await asyncio.sleep(self.settings.files_sweep_seconds)

    async def sweep(self) -> dict[str, int]:
        """Expire old files, drop stale leases and their bytes; counts of what was done."""
        now = self.clock()
        expired = await self._expire_files(now)
        leases = await self._drop_stale_leases(now)
        self._drop_orphan_incoming()
        return {"expired_files": expired, "dropped_leases": leases}

    async def _expire_files(self, now: datetime) -> int:
        async with self.db.session() as session:
            rows = list(
                await session.scalars(
                    select(SessionFile).where(
                        SessionFile.expires_at <= now,
                        SessionFile.status != FileStatus.FILE_EXPIRED.value,
                    )
                )
            )
        for row in rows:
            task = self._tasks.get(row.id)
            if task is not None:
                task.cancel()
            if row.index_ref:
                await self._set(row.id, FileStatus.INDEX_DELETED)
            await self.drop_data(row)
            await self._update(
                row.id,
                status=FileStatus.FILE_EXPIRED.value,
                failure_reason="The file expired: session files live at most "
                f"{self.settings.files_ttl_days:g} days",
                object_key=None,
                index_ref=None,
            )
        return len(rows)

    async def _drop_stale_leases(self, now: datetime) -> int:
        keep_uploads = timedelta(hours=self.settings.files_upload_retention_hours)
        async with self.db.transaction() as session:
            leases = list(await session.scalars(select(FileUploadLease)))
            stale = [
                lease
                for lease in leases
                if (lease.state != "uploaded" and _aware(lease.expires_at) <= now)
                or (lease.uploaded_at is not None and _aware(lease.uploaded_at) + keep_uploads <= now)
            ]
            for lease in stale:
                # A presigned upload may be in the bucket though the lease never saw it.
                await asyncio.to_thread(self.store.delete, lease.object_key or upload_key(lease))
                await session.delete(lease)
        return len(stale)

    def _drop_orphan_incoming(self) -> None:
        """Partial uploads of a server that died mid-upload."""
        horizon = time.time() - 60 * (self.settings.files_lease_minutes + 5)
        for path in self.incoming_dir.iterdir():
            if path.stat().st_mtime < horizon:
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------ rows

    async def _get(self, file_id: str) -> SessionFile | None:
        async with self.db.session() as session:
            return await session.get(SessionFile, file_id)

    async def _set(self, file_id: str, status: FileStatus, reason: str = "") -> None:
        await self._update(file_id, status=status.value, failure_reason=reason)

    async def _update(self, file_id: str, **values: object) -> bool:
        async with self.db.transaction() as session:
            row = await session.get(SessionFile, file_id)
            if row is None:  # deleted meanwhile
                return False
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = self.clock()
        return True


def upload_key(lease: FileUploadLease) -> str:
    """Where a lease's upload is stored (by the API's upload URL or a presigned PUT)."""
    extension = extension_of(lease.file_name)
    return f"session/{lease.workspace_id}/{lease.id}.{extension}"


def _unfinished() -> ColumnElement[bool]:
    return SessionFile.status.in_([s.value for s in IN_PROGRESS])


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes; they are UTC."""
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)

