"""What every CLI command shares: the runtime, and output as rich text or JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Column, Table

from openbailian.config import Settings
from openbailian.errors import OpenBailianError
from openbailian.runtime import Runtime

__all__ = ["console", "run_with_runtime", "emit", "fail", "print_table", "JsonOption", "WorkspaceOption"]

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
    except OpenBailianError as error:
        fail(error.message, code=type(error).__name__)


def emit(data: Any, as_json: bool, human: Callable[[], None] | None = None) -> None:
    if as_json or human is None:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=None if as_json else 2))
    else:
        human()


def fail(message: str, *, code: str = "Error") -> NoReturn:
    err_console.print(f"[red]{code}:[/red] {message}", soft_wrap=True)
    raise typer.Exit(1)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, show_header: bool = True) -> None:
    """A table whose ids are never cut: id columns (``…id``/``…Id``) never wrap or shrink, the
    other columns wrap around them; printed to a pipe or file, no column is cut at all."""
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    columns = []
    for number, header in enumerate(headers):
        if header.lower().endswith("id"):
            longest = max([len(header), *(len(row[number]) for row in cells)])
            columns.append(Column(header, no_wrap=True, min_width=longest))
        else:
            columns.append(Column(header, overflow="fold"))
    table = Table(*columns, show_header=show_header)
    for row in cells:
        table.add_row(*row)
    width = None if console.is_terminal else max(console.width, console.measure(table).maximum)
    console.print(table, width=width, soft_wrap=not console.is_terminal)
