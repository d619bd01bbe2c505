"""The ``openbailian`` command: serve, manage keys and apps, chat.

Feature commands live in their own modules and are added below with
``app.add_typer``.
"""

from __future__ import annotations

import gc

import typer

from openbailian.cli import chat, core, search, serve, worker
from openbailian.cli import files as files_cli
from openbailian.cli import kb as kb_cli
from openbailian.cli import memory as memory_cli
from openbailian.cli import plugins as plugins_cli

__all__ = ["app", "main"]

app = typer.Typer(
    name="openbailian",
    help="Self-hosted, DashScope-compatible Bailian agent applications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("chat")(chat.chat)
app.command("demo-env")(serve.demo_env)
app.add_typer(core.keys_app, name="keys")
app.add_typer(core.apps_app, name="apps")
app.add_typer(core.models_app, name="models")
app.add_typer(files_cli.app, name="files")
app.add_typer(kb_cli.app, name="kb")
app.add_typer(memory_cli.app, name="memory")
app.add_typer(plugins_cli.app, name="plugins")
app.add_typer(search.app, name="search")


def main() -> None:
    try:
        app()
    finally:
        # The interpreter's collections at exit would walk every object still alive (the
        # embedder's vocabulary, jieba's dictionary, the ORM): ~0.5 s after a `kb add` had
        # printed its answer. Everything is closed by now; the OS takes the memory back.
        gc.freeze()
