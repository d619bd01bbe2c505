"""What a run emits. Only ``api/completion/render.py`` knows the wire shape."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Event", "ReasoningDelta", "TextDelta", "ModelUsage", "Finished"]


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ModelUsage:
    model_id: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: str
    session_id: str
    usage: list[ModelUsage] = field(default_factory=list)


Event = ReasoningDelta | TextDelta | Finished
