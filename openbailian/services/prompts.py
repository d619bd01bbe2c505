"""Prompt templates: reusable prompts of a workspace whose ``{{variables}}`` are read from
the content (the same rule as app instructions), for the OpenAPI promptTemplates family.

The use cases take ids and return :class:`PromptTemplate` / :class:`PromptTemplatePage`.
A template of another workspace is answered exactly like a missing one: the caller
learns nothing about other workspaces' ids. Listing pages by id (ids sort in creation
order); the page token is the last id of the previous page.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.engine.app_config import VARIABLE_PATTERN
from openbailian.errors import InvalidParameter, PromptTemplateNotFound
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.prompt_models import PromptTemplateRow

__all__ = [
    "PromptTemplate",
    "PromptTemplatePage",
    "CUSTOM",
    "SYSTEM",
    "TEMPLATE_TYPES",
    "MAX_NAME_CHARS",
    "MAX_CONTENT_CHARS",
    "MAX_PAGE_SIZE",
    "template_variables",
    "create_template",
    "get_template",
    "list_templates",
    "update_template",
    "delete_template",
]

CUSTOM = "Custom"  # made by a user; every template stored here
SYSTEM = "System"  # preset templates: there are none here
TEMPLATE_TYPES = (SYSTEM, CUSTOM)
MAX_NAME_CHARS = 100
MAX_CONTENT_CHARS = 20_000
MAX_PAGE_SIZE = 100
_ID_PREFIX = "pt_"
_ID_LENGTH = len(_ID_PREFIX) + 28


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    id: str
    workspace_id: str
    name: str
    content: str
    type: str
    variables: list[str]
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class PromptTemplatePage:
    """One page; ``next_token`` is None on the last page. ``total`` counts every match."""

    items: list[PromptTemplate]
    next_token: str | None
    max_results: int
    total: int


def template_variables(content: str) -> list[str]:
    """The ``{{name}}`` variables of ``content``, each once, in order of first use."""
    return list(dict.fromkeys(VARIABLE_PATTERN.findall(content)))


def _new_id() -> str:
    # Time first (microseconds, 16 hex digits), then randomness: ids sort in creation order.
    return f"{_ID_PREFIX}{time.time_ns() // 1000:016x}{os.urandom(6).hex()}"


def _template(row: PromptTemplateRow) -> PromptTemplate:
    return PromptTemplate(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        content=row.content,
        type=CUSTOM,
        variables=template_variables(row.content),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_name(name: str) -> str:
    if not name.strip():
        raise InvalidParameter("A prompt template needs a name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidParameter(f"A prompt template name has at most {MAX_NAME_CHARS} characters")
    return name


def _check_content(content: str) -> str:
    if not content.strip():
        raise InvalidParameter("A prompt template needs content")
    if len(content) > MAX_CONTENT_CHARS:
        raise InvalidParameter(f"A prompt template has at most {MAX_CONTENT_CHARS} characters")
    return content


async def _row(session: AsyncSession, template_id: str, workspace_id: str) -> PromptTemplateRow:
    row = await session.get(PromptTemplateRow, template_id)
    if row is None or row.workspace_id != workspace_id:
        raise PromptTemplateNotFound(f"Prompt template '{template_id}' does not exist")
    return row


async def create_template(session: AsyncSession, workspace_id: str, *, name: str, content: str) -> PromptTemplate:
    row = PromptTemplateRow(
        id=_new_id(), workspace_id=workspace_id, name=_check_name(name), content=_check_content(content)
    )
    await ensure_workspace(session, workspace_id)
    session.add(row)
    await session.flush()
    return _template(row)


async def get_template(session: AsyncSession, template_id: str, workspace_id: str) -> PromptTemplate:
    return _template(await _row(session, template_id, workspace_id))


async def update_template(
    session: AsyncSession,
    template_id: str,
    workspace_id: str,
    *,
    name: str | None = None,
    content: str | None = None,
) -> PromptTemplate:
    """Change the name and/or the content (fields left None keep their value)."""
    row = await _row(session, template_id, workspace_id)
    if name is None and content is None:
        raise InvalidParameter("Give a new name or content for the prompt template")
    if name is not None:
        row.name = _check_name(name)
    if content is not None:
        row.content = _check_content(content)
    await session.flush()
    await session.refresh(row)
    return _template(row)


async def delete_template(session: AsyncSession, template_id: str, workspace_id: str) -> None:
    await session.delete(await _row(session, template_id, workspace_id))
    await session.flush()


async def list_templates(
    session: AsyncSession,
    workspace_id: str,
    *,
    max_results: int = 20,
    next_token: str | None = None,
    name: str | None = None,
    template_type: str | None = None,
) -> PromptTemplatePage:
    """A page of the workspace's templates, oldest first; ``name`` matches part of the
    name (case-insensitive), ``template_type`` is ``Custom`` or ``System``."""
    if not 1 <= max_results <= MAX_PAGE_SIZE:
        raise InvalidParameter(f"maxResults must be between 1 and {MAX_PAGE_SIZE}")
    if template_type is not None and template_type not in TEMPLATE_TYPES:
        raise InvalidParameter(f"type must be one of {', '.join(TEMPLATE_TYPES)}, not '{template_type[:50]}'")
    if next_token is not None and not _is_id(next_token):
        raise InvalidParameter("nextToken is not a token this listing returned")
    if template_type == SYSTEM:
        return PromptTemplatePage(items=[], next_token=None, max_results=max_results, total=0)
    where = [PromptTemplateRow.workspace_id == workspace_id]
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(func.lower(PromptTemplateRow.name).like(f"%{escaped.lower()}%", escape="\\"))
    total = await session.scalar(select(func.count()).select_from(PromptTemplateRow).where(*where)) or 0
    query = select(PromptTemplateRow).where(*where)
    if next_token:
        query = query.where(PromptTemplateRow.id > next_token)
    rows = list(await session.scalars(query.order_by(PromptTemplateRow.id).limit(max_results + 1)))
    more = len(rows) > max_results
    rows = rows[:max_results]
    return PromptTemplatePage(
        items=[_template(r) for r in rows],
        next_token=rows[-1].id if more else None,
        max_results=max_results,
        total=total,
    )


def _is_id(token: str) -> bool:
    body = token[len(_ID_PREFIX):]
    return (
        token.startswith(_ID_PREFIX)
        and len(token) == _ID_LENGTH
        and all(c in "0123456789abcdef" for c in body)
    )
