"""What a run emits. Only ``api/completion/render.py`` knows the wire shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Event",
    "ReasoningDelta",
    "TextDelta",
    "Thought",
    "DocReference",
    "References",
    "ModelUsage",
    "Finished",
]


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """New thinking text of the model (``action_type: reasoning``)."""

    text: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New answer text."""

    text: str


@dataclass(frozen=True, slots=True)
class Thought:
    """One step the app took before answering, shown with ``has_thoughts``.

    ``action_type`` is ``agentRag`` (retrieval: ``observation`` holds what was
    found), ``api`` (a plugin call: ``action``/``action_name`` the tool,
    ``action_input`` its arguments, ``observation`` its result) or ``response``.
    Model thinking streams as :class:`ReasoningDelta` instead.
    """

    action_type: str
    thought: str = ""
    action: str | None = None
    action_name: str | None = None
    action_input: Any = None
    observation: str | None = None
    response: str | None = None


@dataclass(frozen=True, slots=True)
class DocReference:
    """A source the answer used (``output.doc_references[]``)."""

    index_id: str
    doc_id: str
    doc_name: str
    text: str
    title: str = ""
    doc_url: str = ""
    biz_id: str = ""
    images: list[str] = field(default_factory=list)
    page_number: list[int] = field(default_factory=list)
    reference_index: str | None = None  # "1", "2"… for doc_reference_type "indexed"


@dataclass(frozen=True, slots=True)
class References:
    """The sources to show; emitted once, before the answer, when the app shows sources."""

    items: list[DocReference]


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


Event = ReasoningDelta | TextDelta | Thought | References | Finished
