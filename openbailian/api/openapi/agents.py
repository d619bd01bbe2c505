"""The agents family of the Bailian OpenAPI (AGENTS envelope).

Its routes are added here (issue 10, `agents` part); see `openbailian/api/openapi/__init__.py`.
"""

from __future__ import annotations

from openbailian.api.openapi.envelopes import Envelope
from openbailian.api.openapi.routing import family_router

__all__ = ["router"]

router = family_router(Envelope.AGENTS, "agents")
