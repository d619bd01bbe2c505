"""The prompt-template family of the Bailian OpenAPI (bare lower camel case
``{requestId, …}``): CreatePromptTemplate, ListPromptTemplates, GetPromptTemplate,
UpdatePromptTemplate, DeletePromptTemplate over ``services/prompts.py``; parameters in
the query. ``variables`` are the ``{{name}}`` placeholders of the content.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from openbailian.api.deps import RuntimeDep
from openbailian.api.openapi.auth import OpenApiCaller
from openbailian.api.openapi.envelopes import Envelope, ok
from openbailian.api.openapi.params import ParamsDep
from openbailian.api.openapi.routing import WORKSPACE, family_router
from openbailian.services import prompts as prompt_service
from openbailian.services.prompts import MAX_CONTENT_CHARS, MAX_NAME_CHARS, MAX_PAGE_SIZE, TEMPLATE_TYPES

__all__ = ["router"]

router = family_router(Envelope.BARE, "prompt templates")

TEMPLATES = WORKSPACE + "/promptTemplates"
TEMPLATE = TEMPLATES + "/{promptTemplateId}"
DEFAULT_PAGE_SIZE = 20


def _bare(request: Request, **fields: object) -> JSONResponse:
    return ok(request, Envelope.BARE, **fields)


@router.post(TEMPLATES)
async def create_prompt_template(
    request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    name = params.required_text("name", max_length=MAX_NAME_CHARS)
    content = params.required_text("content", max_length=MAX_CONTENT_CHARS)
    async with runtime.db.transaction() as session:
        template = await prompt_service.create_template(session, caller.workspace_id, name=name, content=content)
    return _bare(request, promptTemplateId=template.id)


@router.get(TEMPLATES)
async def list_prompt_templates(
    request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    size = params.integer("maxResults", default=DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    assert size is not None
    async with runtime.db.session() as session:
        page = await prompt_service.list_templates(
            session,
            caller.workspace_id,
            max_results=size,
            next_token=params.text("nextToken", allow_empty=False),
            name=params.text("name", max_length=MAX_NAME_CHARS, allow_empty=False),
            template_type=params.choice("type", TEMPLATE_TYPES),
        )
    return _bare(
        request,
        workspaceId=caller.workspace_id,
        promptTemplates=[
            {"promptTemplateId": t.id, "name": t.name, "content": t.content, "type": t.type, "variables": t.variables}
            for t in page.items
        ],
        maxResults=page.max_results,
        nextToken=page.next_token,
        totalCount=page.total,
    )


@router.get(TEMPLATE)
async def get_prompt_template(
    request: Request, promptTemplateId: str, caller: OpenApiCaller, runtime: RuntimeDep
) -> JSONResponse:
    async with runtime.db.session() as session:
        template = await prompt_service.get_template(session, promptTemplateId, caller.workspace_id)
    return _bare(
        request,
        promptTemplateId=template.id,
        name=template.name,
        content=template.content,
        type=template.type,
        variables=template.variables,
        workspaceId=template.workspace_id,
    )


@router.patch(TEMPLATE)
async def update_prompt_template(
    request: Request, promptTemplateId: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    async with runtime.db.transaction() as session:
        await prompt_service.update_template(
            session,
            promptTemplateId,
            caller.workspace_id,
            name=params.text("name", max_length=MAX_NAME_CHARS),
            content=params.text("content", max_length=MAX_CONTENT_CHARS),
        )
    return _bare(request)


@router.delete(TEMPLATE)
async def delete_prompt_template(
    request: Request, promptTemplateId: str, caller: OpenApiCaller, runtime: RuntimeDep
) -> JSONResponse:
    async with runtime.db.transaction() as session:
        await prompt_service.delete_template(session, promptTemplateId, caller.workspace_id)
    return _bare(request)
