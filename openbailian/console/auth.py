"""Sign-in, sign-out, the language switch and (for the administrator) the workspace switch."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from openbailian.api.errors import error_status_and_code
from openbailian.console.i18n import LANG_COOKIE, LANGUAGES
from openbailian.console.web import (
    SESSION_COOKIE,
    Changing,
    ConsoleRoute,
    SignedIn,
    redirect,
    render,
    runtime_of,
    safe_next,
    same_origin,
)
from openbailian.errors import AccessDenied, InvalidApiKey
from openbailian.services import console_sessions

__all__ = ["router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "/console/") -> Response:
    return render(request, "sign_in.html", next=safe_next(next))


@router.post("/sign-in")
async def sign_in(request: Request, credential: str = Form(""), next: str = Form("/console/")) -> Response:
    if not same_origin(request):
        raise AccessDenied("Sign in from this console's own page")
    runtime = runtime_of(request)
    hours = runtime.settings.console_session_hours
    try:
        signed = await console_sessions.sign_in(
            runtime.db, credential, admin_token=request.app.state.admin_token, hours=hours
        )
    except InvalidApiKey as error:
        status, _, message = error_status_and_code(error)
        return render(request, "sign_in.html", status_code=status, next=safe_next(next), message=message)
    response = redirect(safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        signed.token,
        max_age=int(hours * 3600),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request, user: Changing) -> Response:
    await console_sessions.sign_out(runtime_of(request).db, request.cookies.get(SESSION_COOKIE))
    response = redirect("/console/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.get("/lang/{lang}")
async def switch_language(request: Request, lang: str, next: str = "/console/") -> Response:
    response = redirect(safe_next(next))
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/console", samesite="strict")
    return response


@router.post("/workspace")
async def switch_workspace(request: Request, user: Changing, workspace: str = Form(...)) -> Response:
    await console_sessions.switch_workspace(
        runtime_of(request).db, request.cookies.get(SESSION_COOKIE) or "", user, workspace.strip()
    )
    return redirect("/console/apps")


@router.get("/")
async def home(request: Request, user: SignedIn) -> Response:
    return redirect("/console/apps")
