"""Apps: list, create, edit the draft, publish; call snippets for each app."""

from __future__ import annotations

import json

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from openbailian.console.forms import app_changes
from openbailian.console.web import Changing, ConsoleRoute, SignedIn, page, redirect, runtime_of
from openbailian.engine.app_config import AppConfig
from openbailian.services import apps as app_service
from openbailian.services import knowledge as knowledge_service
from openbailian.services import plugins as plugin_service
from openbailian.tools.builtins import BUILTINS

__all__ = ["router", "call_snippets"]

router = APIRouter(prefix="/console/apps", route_class=ConsoleRoute, include_in_schema=False)


@router.get("")
async def list_apps(request: Request, user: SignedIn, done: str = "") -> Response:
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        apps = await app_service.list_apps(session, user.workspace_id)
    return await page(
        request, "apps.html", apps=apps, models=list(runtime.settings.all_models),
        default_model=runtime.settings.default_model, done=done,
    )


@router.post("")
async def create_app(
    request: Request, user: Changing, name: str = Form(...), model: str = Form(...)
) -> Response:
    runtime = runtime_of(request)
    config = app_service.parse_config({"model": model})
    async with runtime.db.transaction() as session:
        app = await app_service.create_app(
            session, workspace_id=user.workspace_id, name=name.strip(), config=config,
            models=runtime.models, publish=False,
        )
    return redirect(f"/console/apps/{app.id}", done="created")


@router.get("/{app_id}")
async def edit_app(request: Request, app_id: str, user: SignedIn, done: str = "") -> Response:
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        app = await app_service.get_app(session, app_id, user.workspace_id)
        versions = await app_service.list_versions(session, app_id, user.workspace_id)
        bases = await knowledge_service.list_bases(session, user.workspace_id)
        plugins = await plugin_service.list_plugins(session, user.workspace_id)
    draft = app.draft
    plugin_choices = [(p.id, p.name) for p in plugins] + [(tool_id, b.title) for tool_id, b in BUILTINS.items()]
    return await page(
        request, "app_edit.html", app=app, draft=draft, variables=list(draft.declared_variables().values()),
        models=list(runtime.settings.all_models), bases=bases, plugins=plugin_choices,
        changed=app.published != app.draft, versions=versions, snippets=call_snippets(str(request.base_url), app.id, draft),
        done=done,
    )


@router.post("/{app_id}")
async def save_app(request: Request, app_id: str, user: Changing) -> Response:
    runtime = runtime_of(request)
    form = await request.form()
    name, changes = app_changes(form)
    publish = form.get("action") == "publish"
    async with runtime.db.transaction() as session:
        await app_service.update_app(
            session, app_id, user.workspace_id, runtime.models, changes=changes, name=name, publish=publish
        )
    return redirect(f"/console/apps/{app_id}", done="published" if publish else "saved")


@router.post("/{app_id}/publish")
async def publish_app(request: Request, app_id: str, user: Changing) -> Response:
    async with runtime_of(request).db.transaction() as session:
        await app_service.publish_app(session, app_id, user.workspace_id)
    return redirect(f"/console/apps/{app_id}", done="published")


@router.post("/{app_id}/rollback")
async def roll_back(request: Request, app_id: str, user: Changing, version: int = Form(...)) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        await app_service.roll_back(session, app_id, user.workspace_id, version, runtime.models)
    return redirect(f"/console/apps/{app_id}", done="rolled_back")


@router.post("/{app_id}/delete")
async def delete_app(request: Request, app_id: str, user: Changing) -> Response:
    async with runtime_of(request).db.transaction() as session:
        await app_service.delete_app(session, app_id, user.workspace_id)
    return redirect("/console/apps", done="deleted")


def call_snippets(server_url: str, app_id: str, config: AppConfig) -> dict[str, str]:
    """Python SDK, curl and Node calls of this app on this server (the key from the environment)."""
    base = server_url.rstrip("/") + "/api/v1/"
    params = {name: (v.default or "") for name, v in config.declared_variables().items()}
    biz = {"user_prompt_params": params} if params else None
    python_biz = f",\n    biz_params={json.dumps(biz, ensure_ascii=False)}" if biz else ""
    body = {"input": {"prompt": "你好", **({"biz_params": biz} if biz else {})}, "parameters": {}}
    body_json = json.dumps(body, ensure_ascii=False)
    python = (
        "import os\nimport dashscope\nfrom dashscope import Application\n\n"
        f'dashscope.base_http_api_url = "{base}"\n'
        "response = Application.call(\n"
        '    api_key=os.getenv("DASHSCOPE_API_KEY"),\n'
        f'    app_id="{app_id}",\n'
        f'    prompt="你好"{python_biz})\n'
        "print(response.output.text if response.status_code == 200 else response.message)\n"
    )
    curl = (
        f"curl -s {base}apps/{app_id}/completion \\\n"
        '  -H "Authorization: Bearer $DASHSCOPE_API_KEY" \\\n'
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d '{body_json}'\n"
    )
    node = (
        f'const response = await fetch("{base}apps/{app_id}/completion", {{\n'
        '  method: "POST",\n'
        "  headers: {\n"
        "    Authorization: `Bearer ${process.env.DASHSCOPE_API_KEY}`,\n"
        '    "Content-Type": "application/json",\n'
        "  },\n"
        f"  body: JSON.stringify({body_json}),\n"
        "});\n"
        "const data = await response.json();\n"
        "console.log(data.output?.text ?? data.message);\n"
    )
    return {"Python SDK": python, "curl": curl, "Node.js": node}
