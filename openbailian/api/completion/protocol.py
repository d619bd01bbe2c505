"""The request body of the application call, as the dashscope SDK sends it.

Types are strict: ``"temperature": "0.5"`` is an error, not a coercion.
Fields this server does not implement (``image_list``, ``file_list``) are
refused with a clear message rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Message",
    "BizParams",
    "RagOptions",
    "CompletionInput",
    "CompletionParameters",
    "CompletionRequest",
]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Message(_Strict):
    model_config = ConfigDict(strict=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class BizParams(_Strict):
    user_prompt_params: dict[str, Any] = Field(default_factory=dict)
    user_defined_params: dict[str, Any] = Field(default_factory=dict)
    user_defined_tokens: dict[str, Any] = Field(default_factory=dict)


class RagOptions(_Strict):
    model_config = ConfigDict(strict=True, extra="forbid")

    pipeline_ids: list[str] | None = None
    file_ids: list[str] | None = None
    tags: list[str] | None = None
    metadata_filter: dict[str, Any] | None = None
    structured_filter: dict[str, Any] | None = None
    session_file_ids: list[str] | None = None


class CompletionInput(_Strict):
    prompt: str | None = None
    messages: list[Message] | None = None
    session_id: str | None = Field(default=None, max_length=128)
    memory_id: str | None = Field(default=None, max_length=128)
    biz_params: BizParams | None = None
    doc_reference_type: Literal["simple", "indexed"] | None = None
    doc_tag_codes: list[str] | None = None
    image_list: list[str] | None = None
    file_list: list[str] | None = None


class CompletionParameters(_Strict):
    incremental_output: bool = False
    has_thoughts: bool = False
    enable_thinking: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    max_tokens: int | None = Field(default=None, ge=1)
    rag_options: RagOptions | None = None


class CompletionRequest(_Strict):
    model: str | None = None
    input: CompletionInput
    parameters: CompletionParameters = Field(default_factory=CompletionParameters)
