"""Finding a row that must belong to the caller's workspace: one rule, one message.

Another workspace's row is reported exactly like a missing one (the same error, the same
message): a caller cannot even learn that an id exists elsewhere. Every face and every
service that looks a row up by id goes through :func:`check_owner`.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import NotFound

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
    """The row; ``missing`` when there is none or it is another workspace's.
    ``workspace_id=None`` (the local CLI) skips the workspace check."""
    row = await session.get(model, row_id)
    check_owner(None if row is None else row.workspace_id, row_id, workspace_id, missing=missing, label=label)
    assert row is not None
    return row


def check_owner(
    owner: str | None, row_id: str, workspace_id: str | None, *, missing: type[NotFound], label: str
) -> None:
    """The rule of :func:`get_in_workspace` for a row's owner read some other way
    (``owner=None``: there is no such row)."""
    if owner is None or (workspace_id is not None and owner != workspace_id):
        raise missing(f"{label} '{row_id}' does not exist")
