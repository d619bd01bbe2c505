"""Routers of the OpenAPI face: paths under ``/{WorkspaceId}``, one envelope per family.

``WORKSPACE`` is the path prefix of every operation. Its ``workspace`` convertor matches
workspace ids only, never a reserved first segment (``api``, ``manage``, ``console``,
``docs``…: ``services.workspaces.RESERVED_WORKSPACE_IDS``), so these routes cannot shadow
the other faces, whatever the order routers are included in.
"""

from __future__ import annotations

import re

from fastapi import APIRouter
from starlette.convertors import Convertor, register_url_convertor

from openbailian.api.openapi.envelopes import Envelope, envelope_route
from openbailian.services.workspaces import RESERVED_WORKSPACE_IDS

__all__ = ["WORKSPACE", "family_router"]


class WorkspaceConvertor(Convertor[str]):
    regex = (
        "(?!(?i:"
        + "|".join(re.escape(name) for name in sorted(RESERVED_WORKSPACE_IDS))
        + ")(?:/|$))[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
    )

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("workspace", WorkspaceConvertor())

WORKSPACE = "/{WorkspaceId:workspace}"


def family_router(envelope: Envelope, tag: str) -> APIRouter:
    """A router whose routes answer (errors included) in ``envelope``; declare its paths as
    ``WORKSPACE + "/memories"`` and so on, exactly as the SDK sends them."""
    return APIRouter(route_class=envelope_route(envelope), tags=[f"Bailian OpenAPI: {tag}"])
