"""Tables of session files: upload leases and the files added from them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openbailian.storage.models import Base, utcnow

__all__ = ["FileUploadLease", "SessionFile", "DataCenterCategory"]


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
    """A file added from a lease; usable in calls once FILE_IS_READY.

    ``category_type`` tells the two kinds apart: a ``SESSION_FILE`` (used by
    ``rag_options.session_file_ids``, expires) or an ``UNSTRUCTURED`` data-center
    document (kept in a category until deleted, imported into knowledge bases).
    Both go through the same processing.
    """

    __tablename__ = "session_files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    lease_id: Mapped[str] = mapped_column(String(64), unique=True)
    category_id: Mapped[str] = mapped_column(String(64))
    category_type: Mapped[str] = mapped_column(String(32), default="SESSION_FILE", server_default="SESSION_FILE")
    tags: Mapped[list[str] | None] = mapped_column(JSON, default=None)
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
    lease_owner: Mapped[str | None] = mapped_column(String(32), default=None)  # the claimant's token
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class DataCenterCategory(Base):
    """A folder of data-center documents (``default`` exists without a row)."""

    __tablename__ = "datacenter_categories"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    category_type: Mapped[str] = mapped_column(String(32), default="UNSTRUCTURED")
    parent_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
