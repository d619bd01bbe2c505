"""The request body of the application call, as the dashscope SDK sends it.

Types are strict: ``"temperature": "0.5"`` is an error, not a coercion. Every
field is either acted on or refused: a field this server does not know
(``parameters.flow_stream_mode``, a typo) is a 400 naming it, never silently
ignored (docs/errors.md lists the refused ones Bailian knows).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Message",
    "HistoryTurn",
    "BizParams",
    "RagOptions",
    "CompletionInput",
    "CompletionParameters",
    "CompletionRequest",
]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class HistoryTurn(_Strict):
    """One turn of the SDK's older ``history`` form: ``{"user": …, "bot": …}``."""

    user: str
    bot: str


class BizParams(_Strict):
    user_prompt_params: dict[str, Any] = Field(default_factory=dict)
    user_defined_params: dict[str, Any] = Field(default_factory=dict)
    user_defined_tokens: dict[str, Any] = Field(default_factory=dict)


class RagOptions(_Strict):
    pipeline_ids: list[str] | None = None
    file_ids: list[str] | None = None
    tags: list[str] | None = None
    metadata_filter: dict[str, Any] | None = None
    structured_filter: dict[str, Any] | None = None
    session_file_ids: list[str] | None = None


class CompletionInput(_Strict):
    prompt: str | None = None
    messages: list[Message] | None = None
    history: list[HistoryTurn] | None = None
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
    # The spec: over HTTP, session_file_ids goes "into the parameters object" (joined with rag_options').
    session_file_ids: list[str] | None = None


class CompletionRequest(_Strict):
    # The SDK sends "": the app decides the model, so any other value is refused.
    model: Literal[""] | None = None
    input: CompletionInput
    parameters: CompletionParameters = Field(default_factory=CompletionParameters)
    # Bailian's HTTP examples send "debug": {}; nothing else is accepted in it.
    debug: dict[str, Any] | None = Field(default=None, max_length=0)
