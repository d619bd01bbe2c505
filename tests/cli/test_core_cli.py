"""The CLI contract scripts rely on: keys, apps, demo setup, chat."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from typer.testing import CliRunner

from openbailian.cli import app as cli
from openbailian.cli.serve import ensure_demo
from openbailian.runtime import Runtime


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("OPENBAILIAN_HOME", str(settings.home))
    monkeypatch.setenv("OPENBAILIAN_DEFAULT_MODEL", "echo")
    if settings.database_url:
        monkeypatch.setenv("OPENBAILIAN_DATABASE_URL", settings.database_url)
    runner = CliRunner()

    def invoke(*args: str, expect: int = 0, input: str | None = None):
        result = runner.invoke(cli, list(args), input=input)
        assert result.exit_code == expect, result.output
        return result

    return invoke


def as_json(result) -> dict:
    return json.loads(result.stdout)


def test_keys_create_json(run):
    created = as_json(run("keys", "create", "--workspace", "team-a", "--json"))
    assert created["workspace"] == "team-a"
    assert created["api_key"].startswith("sk-") and len(created["api_key"]) == 35
    listed = as_json(run("keys", "list", "--json"))["keys"]
    assert [k["workspace"] for k in listed] == ["team-a"]
    assert created["api_key"] not in json.dumps(listed), "a key is shown only once"


def test_apps_create_update_publish_show(run, tmp_path):
    app_id = as_json(run(
        "apps", "create", "--name", "guide", "--model", "echo", "--workspace", "team-b",
        "--instructions", "请给出{{city}}的美食", "--var", "city=北京", "--thinking", "--json",
    ))["app_id"]
    shown = as_json(run("apps", "show", app_id, "--json"))
    assert shown["workspace"] == "team-b"
    assert shown["published"]["variables"] == [{"name": "city", "default": "北京", "description": ""}]
    assert shown["published"]["enable_thinking"] is True

    run("apps", "update", app_id, "--instructions", "new rules", "--json")
    assert as_json(run("apps", "show", app_id, "--json"))["published"]["instructions"] == "请给出{{city}}的美食"
    published = as_json(run("apps", "publish", app_id, "--json"))
    assert published["published_version"] == 2
    assert as_json(run("apps", "show", app_id, "--json"))["published"]["instructions"] == "new rules"

    yaml_file = tmp_path / "app.yaml"
    yaml_file.write_text("name: from-yaml\nmodel: echo\ninstructions: 你好\n", encoding="utf-8")
    other = as_json(run("apps", "create", "--file", str(yaml_file), "--json"))
    assert as_json(run("apps", "show", other["app_id"], "--json"))["name"] == "from-yaml"
    listed = as_json(run("apps", "list", "--json"))["apps"]
    assert {a["app_id"] for a in listed} == {app_id, other["app_id"]}


def test_bad_cli_input_is_a_clear_error(run, tmp_path):
    result = run("apps", "create", "--name", "x", "--model", "no-such-model", "--json", expect=1)
    assert "no-such-model" in result.output
    assert "does not exist" in run("apps", "show", "f" * 32, expect=1).output
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("- just\n- a list\n", encoding="utf-8")
    assert "mapping" in run("apps", "create", "--file", str(bad_yaml), expect=1).output
    result = run("keys", "create", "--workspace", "bad workspace!", expect=1)
    assert "workspace id" in result.output.lower()


def test_demo_is_created_once_and_reused(settings):
    async def twice():
        runtime = Runtime.build(settings)
        try:
            await runtime.migrate()
            return await ensure_demo(runtime), await ensure_demo(runtime)
        finally:
            await runtime.aclose()

    first, second = asyncio.run(twice())
    assert first == second
    assert first["model"] == "echo" and first["api_key"].startswith("sk-")
    assert (settings.home / "demo.json").stat().st_mode & 0o777 == 0o600


def test_chat_streams_a_turn_against_a_live_server(server, monkeypatch):
    app_id = server.app(instructions="rules")
    runner = CliRunner()
    result = runner.invoke(
        cli, ["chat", app_id, "--api-key", server.key(), "--url", server.url],
        input="你好\nagain\nexit\n",
    )
    assert result.exit_code == 0, result.output
    assert '"content": "你好"' in result.output
    # The second turn continued the same session: its echo holds the first turn.
    assert result.output.count('"content": "你好"') >= 2


def test_a_busy_port_is_one_clear_line_before_any_banner(run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--demo", "--host", "127.0.0.1", "--port", str(port), expect=1)
    assert f"port {port} on 127.0.0.1 is already in use" in result.output
    assert "--port" in result.output and "OPENBAILIAN_PORT" in result.output
    assert "api key" not in result.output and "Errno" not in result.output


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


def test_every_command_has_a_help_line():
    import typer.main

    group = typer.main.get_command(cli)
    missing = [" ".join(path) for path, command in _commands(group) if not (command.help or "").strip()]
    assert missing == []


def test_tables_never_cut_ids_even_on_a_narrow_pipe(run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    app_ids = [
        as_json(run("apps", "create", "--name", f"an app with a rather long name {n}", "--model", "echo",
                    "--workspace", "a-workspace-with-a-long-name", "--json"))["app_id"]
        for n in range(2)
    ]
    listed = run("apps", "list").output
    for app_id in app_ids:
        assert app_id in listed, listed
    key = as_json(run("keys", "create", "--workspace", "narrow", "--json"))
    assert key["key_id"] in run("keys", "list").output
