"""What every CLI command shares: the runtime, and output as rich text or JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from openbailian.config import Settings
from openbailian.errors import OpenBailianError
from openbailian.providers.base import ModelError
from openbailian.runtime import Runtime

__all__ = ["console", "run_with_runtime", "emit", "fail", "JsonOption", "WorkspaceOption"]

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")
WorkspaceOption = typer.Option(
    "default", "--workspace", "-w", help="Workspace id (created when new)."
)


def run_with_runtime(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work`` against the database of OPENBAILIAN_HOME (migrated first)."""

    async def main() -> T:
        runtime = Runtime.build(Settings())
        try:
            await runtime.migrate()
            return await work(runtime)
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(main())
    except (OpenBailianError, ModelError) as error:
        fail(error.message, code=type(error).__name__)


def emit(data: Any, as_json: bool, human: Callable[[], None] | None = None) -> None:
    if as_json or human is None:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=None if as_json else 2))
    else:
        human()


def fail(message: str, *, code: str = "Error") -> None:
    err_console.print(f"[red]{code}:[/red] {message}")
    raise typer.Exit(1)
