"""Every family of the Bailian OpenAPI face, in one router that ``api/app.py`` includes."""

from __future__ import annotations

from fastapi import APIRouter

from openbailian.api.openapi import agents, datacenter, index, memory, prompts

__all__ = ["router"]

router = APIRouter()
router.include_router(memory.router)
router.include_router(datacenter.router)
router.include_router(index.router)
router.include_router(agents.router)
router.include_router(prompts.router)
