"""What an app is: model, instructions with variables, generation defaults, switches."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AppConfig", "PromptVariable", "GenerationDefaults", "VARIABLE_PATTERN"]

VARIABLE_PATTERN = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")


class PromptVariable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][\w.-]*$", max_length=64)
    default: str | None = None
    description: str = ""


class GenerationDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)


class AppConfig(BaseModel):
    """One version of an app (the draft, or a published snapshot)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    instructions: str = ""
    variables: list[PromptVariable] = Field(default_factory=list)
    parameters: GenerationDefaults = Field(default_factory=GenerationDefaults)
    enable_thinking: bool = False
    max_history_turns: int | None = Field(default=None, ge=0)
    # Knowledge bases (issue: knowledge): search these on every call unless
    # rag_options.pipeline_ids names others; show_sources fills doc_references.
    knowledge_enabled: bool = False
    knowledge_base_ids: list[str] = Field(default_factory=list)
    # Passages given to the model per call (the server's default when None).
    knowledge_top_k: int | None = Field(default=None, ge=1, le=100)
    show_sources: bool = False
    # Session files: rag_options.session_file_ids are only used with this switch.
    file_parsing: bool = False
    # Long-term memory: memory_id is only used with this switch.
    memory_enabled: bool = False
    # Plugins (tool ids) the model may call.
    plugin_ids: list[str] = Field(default_factory=list)

    @field_validator("variables")
    @classmethod
    def _unique_names(cls, variables: list[PromptVariable]) -> list[PromptVariable]:
        names = [v.name for v in variables]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate variable names: {', '.join(sorted(duplicates))}")
        return variables

    def declared_variables(self) -> dict[str, PromptVariable]:
        """Declared variables plus any ``{{name}}`` used in the instructions (required)."""
        declared = {v.name: v for v in self.variables}
        for name in VARIABLE_PATTERN.findall(self.instructions):
            declared.setdefault(name, PromptVariable(name=name))
        return declared
