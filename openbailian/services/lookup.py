"""Finding a row that must belong to the caller's workspace: one rule, one message."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import NotFound, WorkspaceAccessDenied

__all__ = ["check_owner", "get_in_workspace"]


class _Owned(Protocol):
    workspace_id: Any


Row = TypeVar("Row", bound=_Owned)


async def get_in_workspace(
    session: AsyncSession,
    model: type[Row],
    row_id: str,
    workspace_id: str | None,
    *,
    missing: type[NotFound],
    label: str,
) -> Row:
    """The row; ``missing`` when there is none, WorkspaceAccessDenied when it is another
    workspace's. ``workspace_id=None`` (the local CLI) skips the workspace check."""
    row = await session.get(model, row_id)
    check_owner(None if row is None else row.workspace_id, row_id, workspace_id, missing=missing, label=label)
    assert row is not None
    return row


def check_owner(
    owner: str | None, row_id: str, workspace_id: str | None, *, missing: type[NotFound], label: str
) -> None:
    """The rule of :func:`get_in_workspace` for a row's owner read some other way
    (``owner=None``: there is no such row)."""
    if owner is None:
        raise missing(f"{label} '{row_id}' does not exist")
    if workspace_id is not None and owner != workspace_id:
        raise WorkspaceAccessDenied(
            f"{label} '{row_id}' belongs to another workspace than '{workspace_id}'"
        )
