"""What every console page shares: templates, the language, sign-in and CSRF checks, and
errors rendered as console pages (or as JSON for the page's own fetches)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt

from openbailian import __version__
from openbailian.api.errors import error_status_and_code, request_id_of
from openbailian.console.i18n import LANG_COOKIE, pick_language, translator
from openbailian.errors import AccessDenied, OpenBailianError
from openbailian.runtime import Runtime
from openbailian.services.console_sessions import ConsoleUser, signed_in_user
from openbailian.services.workspaces import list_workspaces

__all__ = [
    "SESSION_COOKIE",
    "ConsoleRoute",
    "SignedIn",
    "Changing",
    "render",
    "render_fragment",
    "page",
    "safe_next",
    "same_origin",
    "render_markdown",
    "redirect",
    "runtime_of",
    "language",
    "SignInRequired",
]

SESSION_COOKIE = "ob_console"
HERE = Path(__file__).parent

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Raw HTML in markdown is shown as text, and link targets such as javascript: are refused
# (markdown-it's validateLink): model output and document text can never become markup.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable("table")


def render_markdown(text: str) -> str:
    return str(_markdown.render(text or ""))


class SignInRequired(Exception):
    """No live console session (never signed in, signed out, expired, or key revoked)."""


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def language(request: Request) -> str:
    return pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def wants_json(request: Request) -> bool:
    """The page's own fetches (JSON or SSE, or carrying the CSRF header) get JSON errors."""
    accept = request.headers.get("accept", "")
    return (
        "application/json" in accept
        or "text/event-stream" in accept
        or request.headers.get("content-type", "").startswith("application/json")
        or bool(request.headers.get("x-csrf-token"))
    )


def render_fragment(request: Request, template: str, **context: Any) -> str:
    lang = language(request)
    user: ConsoleUser | None = getattr(request.state, "console_user", None)
    return _templates.get_template(template).render(
        request=request,
        t=translator(lang),
        lang=lang,
        user=user,
        csrf=user.csrf_token if user else "",
        version=__version__,
        markdown=render_markdown,
        **context,
    )


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = render_fragment(request, template, **context)
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Frame-Options": "DENY"}
    return HTMLResponse(html, status_code=status_code, headers=headers)


# Scripts and styles only from the server itself: an injected <script> or inline handler
# cannot run even if something were ever rendered unescaped.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


async def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page for a signed-in user, with the workspaces the header lets them switch between."""
    user: ConsoleUser | None = getattr(request.state, "console_user", None)
    workspaces: list[str] = []
    if user is not None:
        workspaces = [user.workspace_id]
        if user.is_admin:
            async with runtime_of(request).db.session() as session:
                names = [w.id for w in await list_workspaces(session)]
            workspaces = names if user.workspace_id in names else [user.workspace_id, *names]
    return render(request, template, status_code, workspaces=workspaces, **context)


def redirect(path: str, **query: str) -> RedirectResponse:
    if query:
        path += "?" + "&".join(f"{k}={quote(v)}" for k, v in query.items())
    return RedirectResponse(path, status_code=303)


def safe_next(target: str | None) -> str:
    """A path inside the console to go back to (never another site)."""
    if not target:
        return "/console/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console") or "\\" in target:
        return "/console/"
    return target


async def current_user(request: Request) -> ConsoleUser:
    user = await signed_in_user(runtime_of(request).db, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise SignInRequired()
    request.state.console_user = user
    return user


SignedIn = Annotated[ConsoleUser, Depends(current_user)]


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def changing_user(request: Request, user: SignedIn) -> ConsoleUser:
    """A signed-in user whose request carries the session's CSRF token (every change)."""
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf")
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), user.csrf_token.encode()) or not same_origin(request):
        raise AccessDenied("The form is stale or did not come from this console (CSRF check): reload the page")
    return user


Changing = Annotated[ConsoleUser, Depends(changing_user)]


class ConsoleRoute(APIRoute):
    """Console routes answer errors in the console's own shape: a page, a redirect to sign-in,
    or ``{"code", "message"}`` for the page's fetches."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except SignInRequired:
                if wants_json(request):
                    return _json_error(request, 401, "SignInRequired", translator(language(request))("session_expired"))
                return redirect("/console/sign-in", next=request.url.path)
            except (RequestValidationError, OpenBailianError) as error:
                status, code, message = error_status_and_code(error)
                return _error(request, status, code, message)

        return handler


def _json_error(request: Request, status: int, code: str, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": request_id_of(request)}
    return JSONResponse(body, status_code=status)


def _error(request: Request, status: int, code: str, message: str) -> Response:
    if wants_json(request):
        return _json_error(request, status, code, message)
    return render(request, "error.html", status_code=status, code=code, message=message)
