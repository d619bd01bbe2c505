"""Tables of session files: upload leases and the files added from them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openbailian.storage.models import Base, utcnow

__all__ = ["FileUploadLease", "SessionFile"]


class FileUploadLease(Base):
    """A signed permission to PUT one file of a declared size and MD5, then AddFile it."""

    __tablename__ = "file_upload_leases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    category_id: Mapped[str] = mapped_column(String(64))
    category_type: Mapped[str] = mapped_column(String(32))
    file_name: Mapped[str] = mapped_column(String(255))
    md5: Mapped[str] = mapped_column(String(32))
    size_in_bytes: Mapped[int] = mapped_column(BigInteger)
    # pending → uploading → uploaded; a failed upload goes back to pending; AddFile
    # deletes the lease (the file row keeps its id, so a reuse is recognised).
    state: Mapped[str] = mapped_column(String(16), default="pending")
    object_key: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    uploaded_at: Mapped[datetime | None] = mapped_column(default=None)


class SessionFile(Base):
    """A file added from a lease; usable in calls once FILE_IS_READY."""

    __tablename__ = "session_files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    lease_id: Mapped[str] = mapped_column(String(64), unique=True)
    category_id: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(255))
    file_type: Mapped[str] = mapped_column(String(16))  # extension, without the dot
    kind: Mapped[str] = mapped_column(String(16))  # document | image | video | audio
    size_in_bytes: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    object_key: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str] = mapped_column(String(32), default="INIT", index=True)
    failure_reason: Mapped[str] = mapped_column(Text, default="")
    parser: Mapped[str] = mapped_column(String(64), default="")
    # What parsing found, and the knowledge-pipeline handle of its index entries.
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    index_ref: Mapped[str | None] = mapped_column(String(128), default=None)
    # The claim of the process working on the file (renewed while it works) and
    # how often it was claimed: several API processes may share the database.
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
