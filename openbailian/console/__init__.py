"""The web console at ``/console``: server-rendered pages (Jinja2) over the same services as
the REST API, with the server's own static assets (no CDN, no Node toolchain)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openbailian.console import apps, auth, keys, knowledge, memory, playground, plugins, session_files, usage
from openbailian.console.web import HERE

__all__ = ["install_console"]


def install_console(app: FastAPI) -> None:
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for module in (auth, apps, playground, session_files, knowledge, memory, plugins, keys, usage):
        app.include_router(module.router)
