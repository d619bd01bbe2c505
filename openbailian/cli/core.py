"""``openbailian keys …``, ``openbailian apps …``, ``openbailian models …``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from openbailian.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    emit,
    fail,
    print_table,
    run_with_runtime,
)
from openbailian.config import Settings
from openbailian.crypto import SecretBox
from openbailian.runtime import Runtime
from openbailian.services import apps as app_service
from openbailian.services import keys as key_service

__all__ = ["keys_app", "apps_app", "models_app"]

keys_app = typer.Typer(help="API keys (sk-…): shown once, stored hashed.", no_args_is_help=True)
apps_app = typer.Typer(help="Agent applications: draft, publish, list.", no_args_is_help=True)
models_app = typer.Typer(help="The models apps can name.", no_args_is_help=True)


@keys_app.command("create")
def create_key(
    workspace: str = WorkspaceOption,
    name: str = typer.Option("", help="A label for the key."),
    as_json: bool = JsonOption,
) -> None:
    """Create an API key for a workspace (the workspace is created when new)."""

    async def work(runtime: Runtime) -> key_service.CreatedKey:
        async with runtime.db.transaction() as session:
            return await key_service.create_key(
                session, workspace, name, box=SecretBox.from_settings(runtime.settings)
            )

    created = run_with_runtime(work)
    data = {
        "api_key": created.api_key,
        "workspace": created.workspace_id,
        "key_id": created.id,
        "access_key_id": created.access_key_id,
        "access_key_secret": created.access_key_secret,
    }
    emit(data, as_json, lambda: console.print(
        f"API key for workspace [bold]{created.workspace_id}[/bold] (shown once):\n{created.api_key}\n"
        f"AccessKey pair (OpenAPI SDKs, shown once): {created.access_key_id} {created.access_key_secret}"
    ))


@keys_app.command("list")
def list_keys(workspace: str | None = typer.Option(None, "--workspace", "-w"), as_json: bool = JsonOption) -> None:
    """List API keys (never the secret itself), all workspaces or one."""
    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.db.session() as session:
            rows = await key_service.list_keys(session, workspace)
        return [
            {"key_id": k.id, "workspace": k.workspace_id, "display": k.display, "name": k.name,
             "revoked": k.revoked_at is not None}
            for k in rows
        ]

    rows = run_with_runtime(work)
    emit({"keys": rows}, as_json, lambda: _table(rows, ["key_id", "workspace", "display", "name", "revoked"]))


@keys_app.command("revoke")
def revoke_key(key_id: str, as_json: bool = JsonOption) -> None:
    """Revoke an API key by its key_id; calls with it are refused at once."""
    async def work(runtime: Runtime) -> None:
        async with runtime.db.transaction() as session:
            await key_service.revoke_key(session, key_id)

    run_with_runtime(work)
    emit({"key_id": key_id, "revoked": True}, as_json, lambda: console.print(f"Revoked {key_id}"))


def _config_from_options(
    file: Path | None, overrides: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    data: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            fail(f"Cannot read {file}: {error}", code="InvalidParameter")
        if not isinstance(loaded, dict):
            fail(f"{file} must hold a mapping of app settings", code="InvalidParameter")
        data = loaded
    data.update({k: v for k, v in overrides.items() if v is not None})
    name = data.pop("name", None)
    return name, data


def _variables(values: list[str] | None) -> list[dict[str, Any]] | None:
    """``--var city`` (required) or ``--var city=北京`` (with a default)."""
    if not values:
        return None
    result = []
    for value in values:
        name, sep, default = value.partition("=")
        result.append({"name": name, "default": default if sep else None})
    return result


# The app settings both `apps create` and `apps update` take.
NameOpt = Annotated[str | None, typer.Option("--name", help="The app's name.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="A configured model name (see `models list`).")]
InstructionsOpt = Annotated[
    str | None, typer.Option("--instructions", help="System prompt; may use {{variables}}.")
]
ThinkingOpt = Annotated[bool | None, typer.Option("--thinking/--no-thinking", help="Deep thinking by default.")]
VarOpt = Annotated[list[str] | None, typer.Option("--var", help="Prompt variable: NAME or NAME=DEFAULT.")]
KnowledgeOpt = Annotated[list[str] | None, typer.Option("--knowledge", help="Knowledge base id to search.")]
SourcesOpt = Annotated[bool | None, typer.Option("--show-sources/--hide-sources", help="Fill doc_references.")]
FileParsingOpt = Annotated[
    bool | None, typer.Option("--file-parsing/--no-file-parsing", help="Use session files in calls.")
]
MemoryOpt = Annotated[bool | None, typer.Option("--memory/--no-memory", help="Long-term memory.")]
PluginOpt = Annotated[list[str] | None, typer.Option("--plugin", help="Plugin (tool) id the model may call.")]
FileOpt = Annotated[Path | None, typer.Option("--file", help="YAML with the app's settings.")]


def _app_view(app: app_service.AppRecord) -> dict[str, Any]:
    return {
        "app_id": app.id,
        "name": app.name,
        "workspace": app.workspace_id,
        "draft": app.draft.model_dump(mode="json"),
        "published": None if app.published is None else app.published.model_dump(mode="json"),
        "published_version": app.published_version,
        "created_at": app.created_at.isoformat() if app.created_at else None,
    }


@apps_app.command("create")
def create_app(
    name: NameOpt = None,
    model: ModelOpt = None,
    instructions: InstructionsOpt = None,
    workspace: str = WorkspaceOption,
    thinking: ThinkingOpt = None,
    var: VarOpt = None,
    knowledge: KnowledgeOpt = None,
    show_sources: SourcesOpt = None,
    file_parsing: FileParsingOpt = None,
    memory: MemoryOpt = None,
    plugin: PluginOpt = None,
    file: FileOpt = None,
    draft: bool = typer.Option(False, "--draft", help="Create without publishing."),
    as_json: bool = JsonOption,
) -> None:
    """Create an app; it is published and callable at once unless --draft."""
    app_name, data = _config_from_options(file, _overrides(
        model=model, instructions=instructions, thinking=thinking, var=var, knowledge=knowledge,
        show_sources=show_sources, file_parsing=file_parsing, memory=memory, plugin=plugin,
    ))
    app_name = name or app_name
    if not app_name:
        fail("--name is required (or a name in --file)", code="InvalidParameter")
    data.setdefault("model", Settings().default_model)

    async def work(runtime: Runtime) -> dict[str, Any]:
        config = app_service.parse_config(data)
        async with runtime.db.transaction() as session:
            row = await app_service.create_app(
                session, workspace_id=workspace, name=app_name, config=config,
                models=runtime.models, publish=not draft,
            )
        return _app_view(row)

    view = run_with_runtime(work)
    emit({"app_id": view["app_id"], "workspace": view["workspace"], "name": view["name"]}, as_json,
         lambda: console.print(f"Created app [bold]{view['app_id']}[/bold] in workspace {view['workspace']}"))


def _overrides(**options: Any) -> dict[str, Any]:
    return {
        "model": options["model"],
        "instructions": options["instructions"],
        "enable_thinking": options["thinking"],
        "variables": _variables(options["var"]),
        "knowledge_base_ids": options["knowledge"] or None,
        "knowledge_enabled": True if options["knowledge"] else None,
        "show_sources": options["show_sources"],
        "file_parsing": options["file_parsing"],
        "memory_enabled": options["memory"],
        "plugin_ids": options["plugin"] or None,
    }


@apps_app.command("update")
def update_app(
    app_id: str,
    name: NameOpt = None,
    model: ModelOpt = None,
    instructions: InstructionsOpt = None,
    thinking: ThinkingOpt = None,
    var: VarOpt = None,
    knowledge: KnowledgeOpt = None,
    show_sources: SourcesOpt = None,
    file_parsing: FileParsingOpt = None,
    memory: MemoryOpt = None,
    plugin: PluginOpt = None,
    file: FileOpt = None,
    publish: bool = typer.Option(False, "--publish", help="Publish the draft after the change."),
    as_json: bool = JsonOption,
) -> None:
    """Change an app's draft (calls keep the published version until `apps publish`)."""
    file_name, changes = _config_from_options(file, _overrides(
        model=model, instructions=instructions, thinking=thinking, var=var, knowledge=knowledge,
        show_sources=show_sources, file_parsing=file_parsing, memory=memory, plugin=plugin,
    ))

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.transaction() as session:
            row = await app_service.update_app(
                session, app_id, None, runtime.models, changes=changes, name=name or file_name,
                publish=publish,
            )
        return _app_view(row)

    view = run_with_runtime(work)
    emit(view, as_json, lambda: console.print(f"Updated app {app_id}" + (" and published" if publish else "")))


@apps_app.command("publish")
def publish_app(app_id: str, as_json: bool = JsonOption) -> None:
    """Make the draft the version that calls use."""

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.transaction() as session:
            row = await app_service.publish_app(session, app_id)
        return _app_view(row)

    view = run_with_runtime(work)
    emit({"app_id": app_id, "published_version": view["published_version"]}, as_json,
         lambda: console.print(f"Published {app_id} (version {view['published_version']})"))


@apps_app.command("show")
def show_app(app_id: str, as_json: bool = JsonOption) -> None:
    """Show an app: its workspace, draft and published configuration."""
    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.session() as session:
            return _app_view(await app_service.get_app(session, app_id))

    emit(run_with_runtime(work), True if as_json else False)


@apps_app.command("list")
def list_apps(workspace: str | None = typer.Option(None, "--workspace", "-w"), as_json: bool = JsonOption) -> None:
    """List apps with their ids, all workspaces or one."""
    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.db.session() as session:
            return [_app_view(a) for a in await app_service.list_apps(session, workspace)]

    views = run_with_runtime(work)
    rows = [
        {"app_id": v["app_id"], "name": v["name"], "workspace": v["workspace"],
         "model": (v["published"] or v["draft"])["model"], "published_version": v["published_version"]}
        for v in views
    ]
    emit({"apps": rows}, as_json, lambda: _table(rows, ["app_id", "name", "workspace", "model", "published_version"]))


@apps_app.command("delete")
def delete_app(app_id: str, as_json: bool = JsonOption) -> None:
    """Delete an app by id; calls to it then answer 404."""
    async def work(runtime: Runtime) -> None:
        async with runtime.db.transaction() as session:
            await app_service.delete_app(session, app_id)

    run_with_runtime(work)
    emit({"app_id": app_id, "deleted": True}, as_json, lambda: console.print(f"Deleted {app_id}"))


@models_app.command("list")
def list_models(as_json: bool = JsonOption) -> None:
    """List the models apps can use (OPENBAILIAN_MODELS plus the built-in ones)."""
    settings = Settings()
    rows = [
        {"name": name, "provider": spec.provider, "model": spec.model or spec.path or ""}
        for name, spec in sorted(settings.all_models.items())
    ]
    emit({"models": rows}, as_json, lambda: _table(rows, ["name", "provider", "model"]))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print_table(columns, [[row[c] for c in columns] for row in rows])
