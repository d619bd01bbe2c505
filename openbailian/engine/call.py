"""One call of an app, as the engine and its features know it.

Each face translates its own input once into a :class:`Call` (the DashScope call API from its
wire schema, ``api/completion/protocol.py``; the console's playground from its form). The
engine and every feature then read that one object: a feature is given a
:class:`~openbailian.engine.augment.CallContext`, which holds the call and only what the
engine resolved for it (the app's config, the question, what the model reads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openbailian.engine.app_config import AppConfig
from openbailian.providers.base import ChatMessage

__all__ = ["AppStamp", "Call", "SessionAhead", "UsageSlip"]


@dataclass(frozen=True, slots=True)
class AppStamp:
    """An app's row as this call read it: owner and published version (0: never published).

    ``workspace_id`` is None when there is no such app.
    """

    workspace_id: str | None
    published_version: int


@dataclass(frozen=True, slots=True)
class SessionAhead:
    """A stored session as read with the API key, before the call holds the session's lock:
    the app it belongs to (None: no such session) and, where this process is the only one
    that orders the session's turns (SQLite), its history, good while the process has stored
    no turn of it since ``generation`` (``SessionLocks.unchanged_since``)."""

    session_id: str
    app_id: str | None
    history: tuple[ChatMessage, ...] | None
    generation: int


@dataclass(slots=True)
class UsageSlip:
    """Given by a face that counts calls (``api/usage_meter.py``): the write that stores the
    turn also adds the call, with its tokens, to the usage counters (one transaction, no
    round trip of its own), and sets ``counted``; a call whose turn is not stored (a failure)
    stays for the face to count."""

    counted: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """What the caller asked for: which app, the conversation, and the per-call options.

    ``None`` for a generation option means "the app's, else the model's, default".
    """

    app_id: str
    workspace_id: str
    request_id: str
    prompt: str | None = None
    messages: Sequence[ChatMessage] | None = None  # the caller's conversation (then no stored session)
    session_id: str | None = None  # a stored session to continue
    prompt_params: Mapping[str, object] = field(default_factory=dict)
    enable_thinking: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int | None = None
    memory_id: str | None = None
    # pipeline_ids, file_ids, tags (doc_tag_codes joined in), filters, session_file_ids.
    rag_options: Mapping[str, Any] = field(default_factory=dict)
    doc_reference_type: str = "simple"
    # input.image_list / input.file_list: URLs (http(s) or data:) fetched for this call only.
    image_urls: tuple[str, ...] = ()
    file_urls: tuple[str, ...] = ()
    user_defined_params: Mapping[str, Any] = field(default_factory=dict)
    user_defined_tokens: Mapping[str, Any] = field(default_factory=dict)
    app_stamp: AppStamp | None = None  # already read with the API key; None: not yet
    # Run this config instead of the published one (the console's playground on a draft;
    # the caller has checked that the app is in the workspace).
    config: AppConfig | None = None
    usage: UsageSlip | None = None  # count the call with its turn (see UsageSlip)
    session_ahead: SessionAhead | None = None  # the stored session, read with the API key
