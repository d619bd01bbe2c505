"""create_app(settings): routers, middleware, error handlers, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline
from sqlalchemy import text

from openbailian import __version__
from openbailian.api.boundary import BodyLimits, InputBoundary, enforce_input_boundary
from openbailian.api.completion.router import fast_route as completion_fast_route
from openbailian.api.completion.router import router as completion_router
from openbailian.api.errors import install_error_handlers
from openbailian.api.logredact import install_access_log_redaction
from openbailian.api.manage import files as files_manage
from openbailian.api.manage import knowledge as knowledge_manage
from openbailian.api.manage import memory as memory_manage
from openbailian.api.manage import plugins as plugins_manage
from openbailian.api.manage.router import router as manage_router
from openbailian.api.middleware import EdgeMiddleware
from openbailian.api.native import knowledge as native_knowledge
from openbailian.api.openapi.router import router as openapi_router
from openbailian.api.ratelimit import refuse_addresses_over_the_failure_limit, takes_no_credentials
from openbailian.config import Settings
from openbailian.console import install_console
from openbailian.crypto import SecretBox
from openbailian.runtime import Runtime
from openbailian.services.admin import admin_token
from openbailian.services.limits import AuthFailureLimiter, RateLimiter

__all__ = ["create_app"]

_PING = text("SELECT 1")
# FastAPI's OpenTelemetry bridge looks for a configured provider on every request (~20 µs);
# with OPENBAILIAN_HTTP_TELEMETRY off it is not asked.
_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


async def _check_every_request(request: Request) -> None:
    """The app-wide checks, as one dependency (FastAPI's solving costs per dependency, on every
    request): an address over its failure budget is refused, then the input boundary's verdict."""
    await refuse_addresses_over_the_failure_limit(request)
    await enforce_input_boundary(request)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The ASGI app; its lifespan starts ``runtime`` (built from settings when not given) and closes it."""
    settings = settings or (runtime.settings if runtime else Settings())
    runtime = runtime or Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.aclose()

    # /docs and /redoc with their assets served from the fastapi-offline wheel: no CDN, so they
    # work on a machine without internet.
    app = FastAPIOffline(
        title="openbailian",
        version=__version__,
        description="Self-hosted, DashScope-compatible Bailian agent applications",
        lifespan=lifespan,
        dependencies=[Depends(_check_every_request)],
        telemetry=None if settings.http_telemetry else _TELEMETRY_OFF,
    )
    install_access_log_redaction()  # signed upload URLs' signatures never reach the access log
    app.state.runtime = runtime
    app.state.rate_limiter = RateLimiter(runtime.buckets, settings.rate_limit_per_minute)
    app.state.admin_token = admin_token(settings)
    app.state.secret_box = SecretBox.from_settings(settings)
    app.state.auth_failures = AuthFailureLimiter(runtime.buckets, settings.auth_failures_per_minute)
    app.add_middleware(
        EdgeMiddleware, boundary=InputBoundary(BodyLimits.from_settings(settings)), failures=app.state.auth_failures
    )
    install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)  # before the routers: routes are matched in order
    @takes_no_credentials
    async def healthz() -> dict[str, str]:
        """Ready when the database answers (load balancers poll this)."""
        await runtime.db.read(lambda conn: conn.execute(_PING).scalar(), quick=True)
        return {"status": "ok"}

    app.include_router(completion_router)
    app.include_router(manage_router)
    app.include_router(memory_manage.router)
    app.include_router(plugins_manage.router)
    app.include_router(files_manage.router)
    app.include_router(knowledge_manage.router)
    install_console(app)
    app.include_router(native_knowledge.router)
    app.include_router(openapi_router)  # /{WorkspaceId}/…: the Bailian OpenAPI face
    # Model and retrieval calls: no FastAPI routing or dependencies (openbailian.api.fast).
    app.router.routes[:0] = [completion_fast_route, knowledge_manage.fast_retrieve, native_knowledge.fast_retrieve]
    return app
