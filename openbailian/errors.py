"""The one domain error tree.

Every error the server, the services and the features raise on purpose is an
:class:`OpenBailianError`. Each class says what it means on the wire with two
class attributes, ``status`` (HTTP) and ``code`` (DashScope / OpenAPI code); a
subclass inherits them unless it overrides them, so the mapping follows the
class hierarchy (``api/errors.py`` ``error_status_and_code`` reads them; every
face calls that one function). Errors with ``code = "InternalError"`` keep their
message out of responses (it is logged). Third-party errors (httpx, model
clients) are translated into these classes where they are caught, at the
boundary of the feature that talks to the outside.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol

__all__ = [
    "OpenBailianError",
    "InvalidParameter",
    "InvalidApiKey",
    "SignatureMismatch",
    "SignatureExpired",
    "SignatureNonceUsed",
    "AccessDenied",
    "WorkspaceAccessDenied",
    "NotFound",
    "AppNotFound",
    "AppNotPublished",
    "SessionNotFound",
    "KnowledgeBaseNotFound",
    "KnowledgeFileNotFound",
    "WorkspaceNotFound",
    "MemoryNotFound",
    "PluginNotFound",
    "ModelNotFound",
    "RequestTooLarge",
    "RateLimited",
    "SearchBusy",
    "Conflict",
    "PromptTemplateNotFound",
    "ModelError",
    "ModelUnavailable",
    "ModelTimeout",
    "EmbeddingError",
    "EmbeddingUnavailable",
    "EmbeddingTimeout",
    "RerankError",
    "ParseError",
    "UnsafeFile",
    "ToolError",
    "OutboundError",
    "OutboundBlocked",
    "CalculatorError",
    "SecretUnreadable",
    "BundleError",
    "error_classes",
    "invalid_input",
]


class OpenBailianError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------- the caller's mistakes


class InvalidParameter(OpenBailianError):
    """The request is malformed or a value is wrong."""

    status = 400
    code = "InvalidParameter"


class ModelNotFound(InvalidParameter):
    """An app names a model that is not configured."""

    code = "InvalidParameter.Model"


class AppNotPublished(OpenBailianError):
    status = 400
    code = "AppNotPublished"


class RequestTooLarge(OpenBailianError):
    status = 413
    code = "RequestTooLarge"


class RateLimited(OpenBailianError):
    status = 429
    code = "Throttling.RateQuota"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SearchBusy(OpenBailianError):
    """Knowledge search in PostgreSQL could not read its tables in time: a rebuild holds
    them (``openbailian search reindex`` writing the rows, a migration altering the table)."""

    status = 503
    code = "Index.SearchBusy"


class Conflict(OpenBailianError):
    status = 409
    code = "Conflict"


# ---------------------------------------------------------------- who the caller is


class InvalidApiKey(OpenBailianError):
    """The API key is missing, unknown or revoked."""

    status = 401
    code = "InvalidApiKey"


class SignatureMismatch(InvalidApiKey):
    """An ACS3-HMAC-SHA256 signature that does not match the request."""

    code = "SignatureDoesNotMatch"


class SignatureExpired(InvalidApiKey):
    """A signed request whose x-acs-date is missing, malformed or too far from now."""

    code = "InvalidTimeStamp.Expired"


class SignatureNonceUsed(InvalidApiKey):
    """A signed request whose nonce was already seen (a replay)."""

    code = "SignatureNonceUsed"


class AccessDenied(OpenBailianError):
    """The caller may not do this."""

    status = 403
    code = "AccessDenied"


class WorkspaceAccessDenied(AccessDenied):
    """The resource belongs to another workspace than the caller's."""

    code = "Workspace.AccessDenied"


# ---------------------------------------------------------------- unknown ids


class NotFound(OpenBailianError):
    status = 404
    code = "NotFound"


class AppNotFound(NotFound):
    code = "AppNotFound"


class SessionNotFound(NotFound):
    code = "SessionNotFound"


class KnowledgeBaseNotFound(NotFound):
    """A knowledge base (pipeline id) that does not exist in the caller's workspace."""

    code = "Index.NotFound"


class KnowledgeFileNotFound(NotFound):
    """A document (file id) that does not exist in the caller's workspace."""

    code = "Index.FileNotFound"


class WorkspaceNotFound(NotFound):
    code = "WorkspaceNotFound"


class MemoryNotFound(NotFound):
    """A memory_id that does not exist."""

    code = "MemoryNotFound"


class PluginNotFound(NotFound):
    """A plugin (tool_id) that does not exist."""

    code = "PluginNotFound"


class PromptTemplateNotFound(NotFound):
    """A prompt template id that does not exist in the caller's workspace."""

    code = "PromptTemplateNotFound"


# ---------------------------------------------------------------- models (chat, embedding, rerank)


class ModelError(OpenBailianError):
    """A model backend failed; ``message`` is safe to show to a caller."""

    status = 500
    code = "ModelServiceError"

    def __init__(self, message: str, details: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.details: dict[str, object] = dict(details or {})


class ModelUnavailable(ModelError):
    """The backend cannot be reached or refused service (connection error, 5xx, 429)."""

    status = 503
    code = "ModelServiceUnavailable"


class ModelTimeout(ModelError):
    """The backend did not answer in time."""

    status = 504
    code = "ModelServiceTimeout"


class EmbeddingError(ModelError):
    """The embedding backend answered with something unusable."""


class EmbeddingUnavailable(EmbeddingError, ModelUnavailable):
    """The embedding backend cannot be reached or refused service."""


class EmbeddingTimeout(EmbeddingError, ModelTimeout):
    """The embedding backend did not answer in time."""


class RerankError(ModelError):
    """The rerank service could not be reached or answered with something unusable
    (retrieval falls back to the fused order)."""


# ---------------------------------------------------------------- documents and files


class ParseError(InvalidParameter):
    """The document cannot be read; ``reason`` says why, for the user (stored as the
    document's failure reason)."""

    @property
    def reason(self) -> str:
        return self.message


class UnsafeFile(InvalidParameter):
    """The file failed the safety check; the message says why."""


# ---------------------------------------------------------------- tools


class ToolError(OpenBailianError):
    """A tool could not run; the message is safe to show a model (it becomes the
    tool's observation, not an HTTP error)."""


class OutboundError(ToolError):
    """The request could not be made or completed; the message is safe to show a model."""


class OutboundBlocked(OutboundError):
    """The guard refused the destination."""


class CalculatorError(ToolError, ValueError):
    """An expression the calculator refuses."""


# ---------------------------------------------------------------- the server's own state


class SecretUnreadable(OpenBailianError):
    """A sealed value that this server's key cannot open (the key changed, or the value was altered)."""


class BundleError(OpenBailianError):
    """A bundled model's package is missing or its bytes are not the expected ones."""


def error_classes() -> Iterator[type[OpenBailianError]]:
    """Every class of the tree, parents before children."""
    seen: set[type[OpenBailianError]] = set()
    pending: list[type[OpenBailianError]] = [OpenBailianError]
    while pending:
        cls = pending.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        pending.extend(cls.__subclasses__())


class _Validation(Protocol):
    def errors(self) -> Sequence[Any]: ...


_WRAPPERS = frozenset({"body", "query", "path", "header", "cookie", "form"})


def invalid_input(error: _Validation, subject: str = "") -> InvalidParameter:
    """The one wording of a pydantic validation failure, for its first problem: a request
    body gives ``<where>: <what>``; a described value (an app config, a plugin spec) gives
    ``Invalid <subject> at '<where>': <what>``."""
    first: Mapping[str, Any] = error.errors()[0]
    location = list(first.get("loc", ()))
    if location and location[0] in _WRAPPERS:  # FastAPI's "body", "query", …; a field so named is kept
        location = location[1:]
    where = ".".join(str(part) for part in location)
    if subject:
        return InvalidParameter(f"Invalid {subject} at '{where or subject}': {first['msg']}")
    return InvalidParameter(f"{where}: {first['msg']}" if where else str(first["msg"]))
