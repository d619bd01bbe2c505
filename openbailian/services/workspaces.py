from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.errors import InvalidParameter, WorkspaceNotFound
from openbailian.storage.models import Workspace

__all__ = ["WORKSPACE_ID", "RESERVED_WORKSPACE_IDS", "ensure_workspace", "get_workspace", "list_workspaces"]

WORKSPACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# First path segments of the server's other faces: OpenAPI paths start with /{WorkspaceId}.
RESERVED_WORKSPACE_IDS = frozenset({"api", "manage", "console", "docs", "redoc", "healthz", "static"})


async def ensure_workspace(session: AsyncSession, workspace_id: str) -> Workspace:
    """The workspace with this id, created if it does not exist yet."""
    if not WORKSPACE_ID.match(workspace_id):
        raise InvalidParameter(
            "A workspace id is 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    if workspace_id.lower() in RESERVED_WORKSPACE_IDS:
        raise InvalidParameter(
            f"'{workspace_id}' cannot be a workspace id (reserved: {', '.join(sorted(RESERVED_WORKSPACE_IDS))})"
        )
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        workspace = Workspace(id=workspace_id, name=workspace_id)
        session.add(workspace)
        await session.flush()
    return workspace


async def get_workspace(session: AsyncSession, workspace_id: str) -> Workspace:
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise WorkspaceNotFound(f"Workspace '{workspace_id}' does not exist")
    return workspace


async def list_workspaces(session: AsyncSession) -> list[Workspace]:
    return list(await session.scalars(select(Workspace).order_by(Workspace.created_at)))
