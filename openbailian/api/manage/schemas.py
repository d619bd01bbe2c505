from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from openbailian.engine.app_config import AppConfig, GenerationDefaults, PromptVariable

__all__ = ["WorkspaceCreate", "KeyCreate", "AppCreate", "AppUpdate", "KeyCreated", "AppPublic"]


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=200)


class KeyCreated(BaseModel):
    key_id: str
    api_key: str
    workspace: str
    access_key_id: str
    access_key_secret: str


class AppCreate(AppConfig):
    """An app's settings (see ``AppConfig``), its name, and whether to publish at once."""

    name: str = Field(min_length=1, max_length=200)
    publish: bool = True


class AppUpdate(BaseModel):
    """Changes to the draft; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    model: str | None = None
    instructions: str | None = None
    variables: list[PromptVariable] | None = None
    parameters: GenerationDefaults | None = None
    enable_thinking: bool | None = None
    max_history_turns: int | None = None
    knowledge_enabled: bool | None = None
    knowledge_base_ids: list[str] | None = None
    knowledge_top_k: int | None = None
    show_sources: bool | None = None
    file_parsing: bool | None = None
    memory_enabled: bool | None = None
    plugin_ids: list[str] | None = None


class AppPublic(BaseModel):
    app_id: str
    name: str
    workspace: str
    draft: dict[str, Any]
    published: dict[str, Any] | None
    published_version: int
    created_at: str | None
