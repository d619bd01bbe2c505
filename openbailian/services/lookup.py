"""Finding a row that must belong to the caller's workspace: one rule, one message."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import NotFound, WorkspaceAccessDenied

__all__ = ["get_in_workspace"]


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
    if row is None:
        raise missing(f"{label} '{row_id}' does not exist")
    if workspace_id is not None and row.workspace_id != workspace_id:
        raise WorkspaceAccessDenied(
            f"{label} '{row_id}' belongs to another workspace than '{workspace_id}'"
        )
    return row
