"""``openbailian plugins …``: custom plugins (HTTP tools) described by a YAML/JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
from openbailian.runtime import Runtime
from openbailian.services import plugins as plugin_service

__all__ = ["app"]

app = typer.Typer(
    help="Plugins: HTTP APIs apps may call (plugin_ids), plus builtin:calculator and builtin:datetime.",
    no_args_is_help=True,
)

AnyWorkspace = typer.Option(None, "--workspace", "-w", help="Only this workspace (default: all).")
FileOption = typer.Option(..., "--file", "-f", help="Plugin spec (YAML or JSON).")


def _read(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        fail(f"Cannot read {file}: {error}", code="InvalidParameter")
    if not isinstance(data, dict):
        fail(f"{file} must hold a mapping (name, description, method, url, …)", code="InvalidParameter")
    return data


def _json_option(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        fail(f"{what} is not JSON: {error}", code="InvalidParameter")
    if not isinstance(value, dict):
        fail(f"{what} must be a JSON object", code="InvalidParameter")
    return value


@app.command("create")
def create(file: Path = FileOption, workspace: str = WorkspaceOption, as_json: bool = JsonOption) -> None:
    """Create a plugin from a spec file; prints its tool_id."""
    data = _read(file)

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.transaction() as session:
            return plugin_service.plugin_view(await plugin_service.create_plugin(
                session, workspace, data, guard=runtime.tools.guard, box=runtime.tools.box
            ))

    view = run_with_runtime(work)
    emit(view, as_json, lambda: console.print(f"tool_id: [bold]{view['tool_id']}[/bold]"))


@app.command("update")
def update(tool_id: str, file: Path = FileOption, workspace: str | None = AnyWorkspace, as_json: bool = JsonOption) -> None:
    """Change a plugin: fields in the file replace the stored ones."""
    data = _read(file)

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.transaction() as session:
            plugin = await plugin_service.get_plugin(session, tool_id, workspace)
            return plugin_service.plugin_view(await plugin_service.update_plugin(
                session, plugin, data, guard=runtime.tools.guard, box=runtime.tools.box
            ))

    view = run_with_runtime(work)
    emit(view, as_json, lambda: console.print(f"Updated {tool_id}"))


@app.command("list")
def list_(workspace: str | None = AnyWorkspace, as_json: bool = JsonOption) -> None:
    """List plugins (tool_id), all workspaces or one."""
    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.db.session() as session:
            return [plugin_service.plugin_view(p) for p in await plugin_service.list_plugins(session, workspace)]

    rows = run_with_runtime(work)

    def human() -> None:
        print_table(
            ["tool_id", "workspace", "name", "method", "url"],
            [[row["tool_id"], row["workspace"], row["name"], row["spec"]["method"], row["spec"]["url"]] for row in rows],
        )

    emit({"plugins": rows}, as_json, human)


@app.command("show")
def show(tool_id: str, workspace: str | None = AnyWorkspace, as_json: bool = JsonOption) -> None:
    """Show a plugin's spec (tokens are never shown)."""
    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.db.session() as session:
            return plugin_service.plugin_view(await plugin_service.get_plugin(session, tool_id, workspace))

    view = run_with_runtime(work)
    emit(view, as_json, lambda: console.print_json(json.dumps(view, ensure_ascii=False)))


@app.command("delete")
def delete(tool_id: str, workspace: str | None = AnyWorkspace, as_json: bool = JsonOption) -> None:
    """Delete a plugin by tool_id."""
    async def work(runtime: Runtime) -> None:
        async with runtime.db.transaction() as session:
            await plugin_service.delete_plugin(session, await plugin_service.get_plugin(session, tool_id, workspace))

    run_with_runtime(work)
    emit({"tool_id": tool_id, "deleted": True}, as_json, lambda: console.print(f"Deleted {tool_id}"))


@app.command("test")
def test(
    tool_id: str,
    args: str = typer.Option("{}", "--args", help="The arguments a model would give, as JSON."),
    params: str | None = typer.Option(None, "--params", help="Pass-through values (user_defined_params), as JSON."),
    user_token: str | None = typer.Option(None, "--user-token", envvar="OPENBAILIAN_PLUGIN_USER_TOKEN"),
    workspace: str | None = AnyWorkspace,
    as_json: bool = JsonOption,
) -> None:
    """Call a plugin once through the outbound guard and print the observation."""
    arguments, passthrough = _json_option(args, "--args"), _json_option(params, "--params")

    async def work(runtime: Runtime) -> str:
        async with runtime.db.session() as session:
            plugin = await plugin_service.get_plugin(session, tool_id, workspace)
        return await plugin_service.test_plugin(
            plugin, runtime.tools.guard, arguments, passthrough=passthrough, user_token=user_token,
            box=runtime.tools.box,
        )

    observation = run_with_runtime(work)
    emit({"tool_id": tool_id, "observation": observation}, as_json, lambda: console.print(observation))
