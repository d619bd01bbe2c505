"""The agents family of the Bailian OpenAPI (``{requestId, success, code, message,
httpStatusCode, data}``): CreateAndPulishAgent (sic), UpdateAndPublishAgent,
UpdateAndPublishAgentSelective, GetPublishedAgent, ListPublishedAgent, DeleteAgent over
``services/apps.py``. An agent is an app: its code is the ``app_id`` of an application
call. Parameters in the form body (``applicationConfig``, ``sampleLibrary`` as JSON
strings); the field mapping is in ``agent_wire.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from openbailian.api.deps import RuntimeDep
from openbailian.api.openapi.agent_wire import AgentSettings, merge_unmapped, read_agent, render_agent
from openbailian.api.openapi.auth import OpenApiCaller
from openbailian.api.openapi.envelopes import Envelope, ok
from openbailian.api.openapi.params import Params, ParamsDep
from openbailian.api.openapi.routing import WORKSPACE, family_router
from openbailian.errors import AppNotPublished
from openbailian.services import apps as app_service

__all__ = ["router"]

router = family_router(Envelope.AGENTS, "agents")

AGENTS = WORKSPACE + "/application/agents"
AGENT = AGENTS + "/{appCode}"
MAX_PAGE_SIZE = 100
MAX_INSTRUCTIONS_CHARS = 100_000


def _settings(params: Params, *, full: bool, require_model: bool = False) -> AgentSettings:
    model_id = params.required_text("modelId", max_length=200) if require_model else params.text(
        "modelId", max_length=200, allow_empty=False
    )
    return read_agent(
        model_id=model_id,
        instructions=params.text("instructions", max_length=MAX_INSTRUCTIONS_CHARS),
        application_config=params.json_object("applicationConfig"),
        sample_library=params.json_object("sampleLibrary"),
        full=full,
    )


def _name(params: Params, *, required: bool) -> str | None:
    if required:
        return params.required_text("name", max_length=app_service.MAX_NAME_CHARS)
    return params.text("name", max_length=app_service.MAX_NAME_CHARS, allow_empty=False)


def _data(request: Request, data: Any) -> JSONResponse:
    return ok(request, Envelope.AGENTS, data)


@router.post(AGENTS)
async def create_and_publish_agent(
    request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    name = _name(params, required=True)
    assert name is not None
    settings = _settings(params, full=True, require_model=True)
    config = app_service.parse_config(settings.changes)
    async with runtime.db.transaction() as session:
        app = await app_service.create_app(
            session, workspace_id=caller.workspace_id, name=name, config=config,
            models=runtime.models, publish=True, unmapped=settings.unmapped,
        )
    return _data(request, app.id)


async def _update(
    request: Request, app_code: str, caller: OpenApiCaller, params: Params, runtime: RuntimeDep, *, full: bool
) -> JSONResponse:
    name = _name(params, required=False)
    settings = _settings(params, full=full)
    async with runtime.db.transaction() as session:
        current = await app_service.get_app(session, app_code, caller.workspace_id)
        changes, unmapped = dict(settings.changes), settings.unmapped
        if "parameters" in changes:
            # top_p, top_k, seed have no agent field: they stay; a full update resets the others
            kept = current.draft.parameters.model_dump()
            if full:
                kept.update(temperature=None, max_tokens=None)
            changes["parameters"] = {**kept, **changes["parameters"]}
        if not full:
            unmapped = merge_unmapped(current.unmapped, unmapped)
        app = await app_service.update_app(
            session, app_code, caller.workspace_id, runtime.models,
            changes=changes, name=name, unmapped=unmapped, publish=True,
        )
    return _data(request, app.id)


@router.put(AGENT)
async def update_and_publish_agent(
    request: Request, appCode: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    return await _update(request, appCode, caller, params, runtime, full=True)


@router.put(AGENT + "/updateAndPublishAgentSelective")
async def update_and_publish_agent_selective(
    request: Request, appCode: str, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    return await _update(request, appCode, caller, params, runtime, full=False)


@router.get(AGENT)
async def get_published_agent(
    request: Request, appCode: str, caller: OpenApiCaller, runtime: RuntimeDep
) -> JSONResponse:
    async with runtime.db.session() as session:
        app = await app_service.get_app(session, appCode, caller.workspace_id)
    if app.published is None:
        raise AppNotPublished(f"App '{appCode}' has no published version; publish it first")
    return _data(request, render_agent(app, app.published))


@router.get(AGENTS)
async def list_published_agent(
    request: Request, caller: OpenApiCaller, params: ParamsDep, runtime: RuntimeDep
) -> JSONResponse:
    page_no = params.integer("pageNo", default=1, minimum=1, maximum=1_000_000)
    page_size = params.integer("pageSize", default=30, minimum=1, maximum=MAX_PAGE_SIZE)
    params.json_list("subTypes")  # every app here is an agent: read only to refuse a malformed value
    assert page_no is not None and page_size is not None
    async with runtime.db.session() as session:
        page = await app_service.list_published_apps(
            session, caller.workspace_id, page=page_no, page_size=page_size
        )
    return _data(request, {
        "list": [render_agent(app, app.published) for app in page.items if app.published is not None],
        "pageNo": page.page,
        "pageSize": page.page_size,
        "total": page.total,
    })


@router.delete(AGENT)
async def delete_agent(request: Request, appCode: str, caller: OpenApiCaller, runtime: RuntimeDep) -> JSONResponse:
    async with runtime.db.transaction() as session:
        await app_service.delete_app(session, appCode, caller.workspace_id)
    return _data(request, appCode)
