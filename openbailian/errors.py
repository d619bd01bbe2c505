"""The domain error tree. ``api/errors.py`` maps each class to an HTTP status
and a DashScope error code, in one table; nothing else needs to know them."""

from __future__ import annotations

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
    "ModelNotFound",
    "RequestTooLarge",
    "RateLimited",
    "Conflict",
    "PromptTemplateNotFound",
]


class OpenBailianError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(OpenBailianError):
    """The request is malformed or a value is wrong."""


class InvalidApiKey(OpenBailianError):
    """The API key is missing, unknown or revoked."""


class SignatureMismatch(InvalidApiKey):
    """An ACS3-HMAC-SHA256 signature that is malformed or does not match the request."""


class SignatureExpired(InvalidApiKey):
    """A signed request whose ``x-acs-date`` is missing or more than 15 minutes away."""


class SignatureNonceUsed(InvalidApiKey):
    """A signed request whose ``x-acs-signature-nonce`` was already seen (a replay)."""


class AccessDenied(OpenBailianError):
    """The caller may not do this."""


class WorkspaceAccessDenied(AccessDenied):
    """The resource belongs to another workspace than the caller's."""


class NotFound(OpenBailianError):
    pass


class AppNotFound(NotFound):
    pass


class AppNotPublished(OpenBailianError):
    pass


class SessionNotFound(NotFound):
    pass


class KnowledgeBaseNotFound(NotFound):
    """A knowledge base (pipeline id) that does not exist in the caller's workspace."""


class KnowledgeFileNotFound(NotFound):
    """A document (file id) that does not exist in the caller's workspace."""


class WorkspaceNotFound(NotFound):
    pass


class ModelNotFound(InvalidParameter):
    """An app names a model that is not configured."""


class RequestTooLarge(OpenBailianError):
    pass


class RateLimited(OpenBailianError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(OpenBailianError):
    pass


class MemoryNotFound(NotFound):
    """A memory_id that does not exist."""


class PluginNotFound(NotFound):
    """A plugin (tool_id) that does not exist."""


class PromptTemplateNotFound(NotFound):
    """A prompt template id that does not exist in the caller's workspace."""
