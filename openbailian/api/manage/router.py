"""Routes of the management API; each delegates to ``openbailian.services``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from openbailian.api.deps import AdminCaller, CurrentCaller, RuntimeDep
from openbailian.api.manage.schemas import (
    AppCreate,
    AppPublic,
    AppUpdate,
    KeyCreate,
    KeyCreated,
    WorkspaceCreate,
)
from openbailian.engine.app_config import AppConfig
from openbailian.services import apps as app_service
from openbailian.services import keys as key_service
from openbailian.services import workspaces as workspace_service

__all__ = ["router"]

router = APIRouter(prefix="/manage/v1", tags=["manage"])


@router.post("/workspaces", status_code=201)
async def create_workspace(body: WorkspaceCreate, _: AdminCaller, runtime: RuntimeDep) -> dict[str, str]:
    async with runtime.db.transaction() as session:
        workspace = await workspace_service.ensure_workspace(session, body.id)
    return {"workspace": workspace.id}


@router.get("/workspaces")
async def list_workspaces(_: AdminCaller, runtime: RuntimeDep) -> dict[str, list[dict[str, str]]]:
    async with runtime.db.session() as session:
        rows = await workspace_service.list_workspaces(session)
    return {"workspaces": [{"workspace": w.id, "created_at": w.created_at.isoformat()} for w in rows]}


@router.post("/workspaces/{workspace_id}/keys", status_code=201)
async def create_key(
    workspace_id: str, body: KeyCreate, _: AdminCaller, runtime: RuntimeDep, request: Request
) -> KeyCreated:
    async with runtime.db.transaction() as session:
        created = await key_service.create_key(
            session, workspace_id, body.name, box=request.app.state.secret_box
        )
    return KeyCreated(
        key_id=created.id,
        api_key=created.api_key,
        workspace=created.workspace_id,
        access_key_id=created.access_key_id,
        access_key_secret=created.access_key_secret,
    )


@router.get("/workspaces/{workspace_id}/keys")
async def list_keys(workspace_id: str, _: AdminCaller, runtime: RuntimeDep) -> dict[str, Any]:
    async with runtime.db.session() as session:
        rows = await key_service.list_keys(session, workspace_id)
    return {
        "keys": [
            {"key_id": k.id, "display": k.display, "name": k.name, "revoked": k.revoked_at is not None}
            for k in rows
        ]
    }


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, _: AdminCaller, runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as session:
        await key_service.revoke_key(session, key_id)
    return Response(status_code=204)


def _app_public(app: app_service.AppRecord) -> AppPublic:
    return AppPublic(
        app_id=app.id,
        name=app.name,
        workspace=app.workspace_id,
        draft=app.draft.model_dump(mode="json"),
        published=None if app.published is None else app.published.model_dump(mode="json"),
        published_version=app.published_version,
        created_at=app.created_at.isoformat() if app.created_at else None,
    )


@router.post("/apps", status_code=201)
async def create_app(body: AppCreate, caller: CurrentCaller, runtime: RuntimeDep) -> AppPublic:
    config = AppConfig.model_validate(body.model_dump(exclude={"name", "publish"}))
    async with runtime.db.transaction() as session:
        app = await app_service.create_app(
            session,
            workspace_id=caller.workspace_id,
            name=body.name,
            config=config,
            models=runtime.models,
            publish=body.publish,
        )
    return _app_public(app)


@router.get("/apps")
async def list_apps(caller: CurrentCaller, runtime: RuntimeDep) -> dict[str, list[AppPublic]]:
    async with runtime.db.session() as session:
        rows = await app_service.list_apps(session, caller.workspace_id)
    return {"apps": [_app_public(a) for a in rows]}


@router.get("/apps/{app_id}")
async def get_app(app_id: str, caller: CurrentCaller, runtime: RuntimeDep) -> AppPublic:
    async with runtime.db.session() as session:
        app = await app_service.get_app(session, app_id, caller.workspace_id)
    return _app_public(app)


@router.patch("/apps/{app_id}")
async def update_app(
    app_id: str, body: AppUpdate, caller: CurrentCaller, runtime: RuntimeDep
) -> AppPublic:
    changes = body.model_dump(exclude_unset=True, exclude={"name"})
    async with runtime.db.transaction() as session:
        app = await app_service.update_app(
            session, app_id, caller.workspace_id, runtime.models, changes=changes, name=body.name
        )
    return _app_public(app)


@router.post("/apps/{app_id}/publish")
async def publish_app(app_id: str, caller: CurrentCaller, runtime: RuntimeDep) -> AppPublic:
    async with runtime.db.transaction() as session:
        app = await app_service.publish_app(session, app_id, caller.workspace_id)
    return _app_public(app)


@router.delete("/apps/{app_id}", status_code=204)
async def delete_app(app_id: str, caller: CurrentCaller, runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as session:
        await app_service.delete_app(session, app_id, caller.workspace_id)
    return Response(status_code=204)
