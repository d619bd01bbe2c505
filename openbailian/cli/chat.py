"""``openbailian chat APP_ID``: a terminal chat that streams, through the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import typer
from rich.console import Console

from openbailian.config import Settings

__all__ = ["chat", "stream_events"]

console = Console()


def chat(
    app_id: str,
    api_key: str | None = typer.Option(None, "--api-key", envvar="DASHSCOPE_API_KEY", help="sk-… key."),
    url: str | None = typer.Option(None, "--url", help="Server base URL (default from OPENBAILIAN_HOST/PORT)."),
    thoughts: bool = typer.Option(False, "--thoughts", help="Show the model's thinking."),
    thinking: bool | None = typer.Option(None, "--thinking/--no-thinking", help="Override the app's deep thinking."),
    session_id: str | None = typer.Option(None, "--session", help="Continue a stored session."),
) -> None:
    """Chat with an app; each turn continues the session. Ctrl-D or 'exit' quits."""
    if not api_key:
        console.print("[red]An API key is needed: --api-key or DASHSCOPE_API_KEY[/red]")
        raise typer.Exit(1)
    settings = Settings()
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    endpoint = f"{base}/api/v1/apps/{app_id}/completion"
    with httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client:
        while True:
            try:
                prompt = console.input("[bold green]you> [/bold green]")
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if prompt.strip() in {"exit", "quit"}:
                return
            if not prompt.strip():
                continue
            parameters: dict[str, object] = {"incremental_output": True, "has_thoughts": thoughts}
            if thinking is not None:
                parameters["enable_thinking"] = thinking
            body = {"input": {"prompt": prompt, "session_id": session_id}, "parameters": parameters}
            session_id = _turn(client, endpoint, api_key, body) or session_id


def _turn(client: httpx.Client, endpoint: str, api_key: str, body: dict[str, Any]) -> str | None:
    headers = {"Authorization": f"Bearer {api_key}", "X-DashScope-SSE": "enable"}
    session_id = None
    in_thought = False
    for kind, data in stream_events(client, endpoint, headers, body):
        if kind == "error":
            console.print(f"[red]{data.get('code')}: {data.get('message')}[/red]")
            return session_id
        output = data.get("output") or {}
        session_id = output.get("session_id") or session_id
        for thought in output.get("thoughts") or []:
            text = thought.get("thought") or thought.get("observation") or ""
            if text:
                in_thought = True
                console.print(text, style="dim italic", end="")
        if output.get("text"):
            if in_thought:
                console.print()
                in_thought = False
            console.print(output["text"], end="", markup=False, highlight=False)
    console.print()
    return session_id


def stream_events(
    client: httpx.Client, endpoint: str, headers: dict[str, str], body: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    """(event name, parsed data) for each SSE block of one call."""
    with client.stream("POST", endpoint, headers=headers, json=body) as response:
        if response.status_code != 200 and "text/event-stream" not in response.headers.get("content-type", ""):
            response.read()
            yield "error", response.json()
            return
        event = "result"
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:]
            elif line.startswith("data:"):
                yield event, json.loads(line[5:])
                event = "result"
