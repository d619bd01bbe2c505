"""The data center (files, categories) family of the Bailian OpenAPI (DATACENTER envelope).

Its routes are added here (issue 10, `datacenter` part); see `openbailian/api/openapi/__init__.py`.
"""

from __future__ import annotations

from openbailian.api.openapi.envelopes import Envelope
from openbailian.api.openapi.routing import family_router

__all__ = ["router"]

router = family_router(Envelope.DATACENTER, "data center (files, categories)")
