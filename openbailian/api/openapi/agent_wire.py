"""The agent of the Bailian OpenAPI (CreateAndPulishAgent …) mapped onto an app.

Each agent field with an app equivalent (``FIELD_MAP``) becomes that app setting; every
other field the caller sends (``historyConfig``, ``securityConfig``/``security``,
``workFlows``, ``sampleLibrary``, the rest of ``ragConfig``, keys this server does not
know) is kept as sent in the app's ``unmapped`` settings and returned by Get/List, but
has no effect on calls. ``docs/openapi.md`` lists both.

``applicationConfig.tools`` is a list of ``{"type": …}``: the type ``file_parsing``
is the app's file-parsing switch (session files); every other type names a plugin
(``builtin:calculator``, or a plugin id of the workspace). The Python SDK sends
``"tools": []`` with every ``applicationConfig``, so a selective update reads an empty
list as "unchanged".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from openbailian.engine.app_config import AppConfig
from openbailian.errors import InvalidParameter
from openbailian.services.apps import AppRecord

__all__ = [
    "FILE_PARSING_TOOL",
    "FIELD_MAP",
    "AgentSettings",
    "read_agent",
    "render_agent",
    "merge_unmapped",
]

FILE_PARSING_TOOL = "file_parsing"

# agent field (path in the wire) -> app setting (AppConfig field); docs/openapi.md shows it.
FIELD_MAP: dict[str, str] = {
    "modelId": "model",
    "instructions": "instructions",
    "applicationConfig.parameters.temperature": "parameters.temperature",
    "applicationConfig.parameters.maxTokens": "parameters.max_tokens",
    "applicationConfig.parameters.dialogRound": "max_history_turns",
    "applicationConfig.parameters.enable_thinking": "enable_thinking",
    "applicationConfig.ragConfig.knowledgeBaseCodeList": "knowledge_base_ids",
    "applicationConfig.ragConfig.enableSearch": "knowledge_enabled",
    "applicationConfig.ragConfig.topK": "knowledge_top_k",
    "applicationConfig.ragConfig.enableCitation": "show_sources",
    "applicationConfig.longTermMemory.enable": "memory_enabled",
    f"applicationConfig.tools[type={FILE_PARSING_TOOL}]": "file_parsing",
    "applicationConfig.tools[type=<plugin id>]": "plugin_ids",
}


class _Wire(BaseModel):
    # Keys this server does not map are kept (model_extra) and stored as sent.
    model_config = ConfigDict(extra="allow")


class _Parameters(_Wire):
    temperature: float | None = Field(default=None, ge=0, le=2)
    maxTokens: int | None = Field(default=None, ge=1)
    dialogRound: int | None = Field(default=None, ge=0, le=1000)
    enable_thinking: bool | None = None


class _Rag(_Wire):
    knowledgeBaseCodeList: list[str] | None = Field(default=None, max_length=100)
    enableSearch: bool | None = None
    topK: int | None = Field(default=None, ge=1, le=100)
    enableCitation: bool | None = None


class _Memory(_Wire):
    enable: bool | None = None


class _Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=200)


class _ApplicationConfig(_Wire):
    parameters: _Parameters | None = None
    ragConfig: _Rag | None = None
    longTermMemory: _Memory | None = None
    tools: list[_Tool] | None = Field(default=None, max_length=100)

    @field_validator("tools")
    @classmethod
    def _unique(cls, tools: list[_Tool] | None) -> list[_Tool] | None:
        types = [t.type for t in tools or []]
        if len(set(types)) != len(types):
            raise ValueError("a tool type is listed twice")
        return tools


@dataclass(frozen=True)
class AgentSettings:
    """What an agent call asked for: app settings (``changes``: AppConfig fields, only
    those the call set) and the fields with no equivalent (``unmapped``)."""

    changes: dict[str, Any] = field(default_factory=dict)
    unmapped: dict[str, Any] = field(default_factory=dict)


def _parse_config(value: dict[str, Any]) -> _ApplicationConfig:
    try:
        return _ApplicationConfig.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in ("applicationConfig", *first["loc"]))
        raise InvalidParameter(f"The parameter {where} is invalid: {first['msg']}") from None


def _set(model: BaseModel | None) -> set[str]:
    return set() if model is None else model.model_fields_set


def read_agent(
    *,
    model_id: str | None,
    instructions: str | None,
    application_config: dict[str, Any] | None,
    sample_library: Any = None,
    full: bool,
) -> AgentSettings:
    """The app settings of an agent call. ``full`` (create, UpdateAndPublishAgent): every
    mapped field the call leaves out takes the app default; otherwise (…Selective) only
    the fields sent change."""
    wire = _parse_config(application_config or {})
    given: dict[str, Any] = {}
    if model_id is not None:
        given["model"] = model_id
    if instructions is not None:
        given["instructions"] = instructions
    parameters, rag, memory = wire.parameters, wire.ragConfig, wire.longTermMemory
    generation = {
        app: getattr(parameters, key)
        for key, app in (("temperature", "temperature"), ("maxTokens", "max_tokens"))
        if key in _set(parameters)
    }
    if full or generation:
        given["parameters"] = generation
    for model, key, app in (
        (parameters, "dialogRound", "max_history_turns"),
        (parameters, "enable_thinking", "enable_thinking"),
        (rag, "topK", "knowledge_top_k"),
        (rag, "enableCitation", "show_sources"),
        (memory, "enable", "memory_enabled"),
    ):
        if key in _set(model):
            given[app] = getattr(model, key)
    if "knowledgeBaseCodeList" in _set(rag):
        given["knowledge_base_ids"] = list(rag.knowledgeBaseCodeList or [])  # type: ignore[union-attr]  # _set(None) is empty: rag is set here
        given["knowledge_enabled"] = bool(given["knowledge_base_ids"])
    if "enableSearch" in _set(rag):
        given["knowledge_enabled"] = rag.enableSearch  # type: ignore[union-attr]  # as above
    # The Python SDK sends "tools": [] in every applicationConfig: in a selective update an
    # empty list means "not sent" (a full update clears the tools).
    if wire.tools is not None and (full or wire.tools):
        types = [t.type for t in wire.tools]
        given["file_parsing"] = FILE_PARSING_TOOL in types
        given["plugin_ids"] = [t for t in types if t != FILE_PARSING_TOOL]
    changes = {**_defaults(), **given} if full else given
    # None means "not set" for an app (and a JSON null was sent for a mapped field)
    changes = {k: v for k, v in changes.items() if v is not None or k in _NULLABLE}
    return AgentSettings(changes=changes, unmapped=_unmapped(wire, application_config, sample_library))


_NULLABLE = {"max_history_turns", "knowledge_top_k"}
_MAPPED_FIELDS = (
    "instructions", "parameters", "max_history_turns", "enable_thinking", "knowledge_base_ids",
    "knowledge_enabled", "knowledge_top_k", "show_sources", "memory_enabled", "file_parsing", "plugin_ids",
)


def _defaults() -> dict[str, Any]:
    """The app defaults of every mapped field (a full update resets what it leaves out)."""
    defaults = AppConfig(model="-").model_dump(mode="json")
    result = {k: defaults[k] for k in _MAPPED_FIELDS}
    result["parameters"] = {}
    return result


def _unmapped(wire: _ApplicationConfig, sent: dict[str, Any] | None, sample_library: Any) -> dict[str, Any]:
    config: dict[str, Any] = dict(wire.model_extra or {})
    for name in ("parameters", "ragConfig", "longTermMemory"):
        extra = getattr(wire, name).model_extra if getattr(wire, name) is not None else None
        if extra:
            config[name] = dict(extra)
    result: dict[str, Any] = {}
    if config:
        result["applicationConfig"] = copy.deepcopy(config)
    if sample_library is not None:
        result["sampleLibrary"] = copy.deepcopy(sample_library)
    return result


def merge_unmapped(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``update`` laid over it, object by object (a selective update)."""
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_unmapped(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def render_agent(app: AppRecord, config: AppConfig) -> dict[str, Any]:
    """An app as an agent (``data`` of GetPublishedAgent, an item of ListPublishedAgent)."""
    tools = ([{"type": FILE_PARSING_TOOL}] if config.file_parsing else []) + [
        {"type": plugin_id} for plugin_id in config.plugin_ids
    ]
    mapped = {
        "parameters": _drop_none({
            "temperature": config.parameters.temperature,
            "maxTokens": config.parameters.max_tokens,
            "dialogRound": config.max_history_turns,
            "enable_thinking": config.enable_thinking,
        }),
        "ragConfig": _drop_none({
            "knowledgeBaseCodeList": list(config.knowledge_base_ids),
            "enableSearch": config.knowledge_enabled,
            "topK": config.knowledge_top_k,
            "enableCitation": config.show_sources,
        }),
        "longTermMemory": {"enable": config.memory_enabled},
        "tools": tools,
    }
    unmapped = app.unmapped.get("applicationConfig", {})
    application_config = merge_unmapped(unmapped, mapped)
    if "securityConfig" in unmapped and "security" not in unmapped:
        # Create sends securityConfig, Get and List read security: the same setting.
        application_config["security"] = copy.deepcopy(unmapped["securityConfig"])
    agent: dict[str, Any] = {
        "code": app.id,
        "name": app.name,
        "modelId": config.model,
        "instructions": config.instructions,
        "type": "agent",
        "applicationConfig": application_config,
    }
    if "sampleLibrary" in app.unmapped:
        agent["sampleLibrary"] = copy.deepcopy(app.unmapped["sampleLibrary"])
    return agent
