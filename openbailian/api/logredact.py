"""Access logs never carry credentials: the values of query parameters that sign or
authenticate a request (a signed upload URL's ``Signature``, any ``token``/``key``/
``secret`` parameter) are replaced before uvicorn's access log line is written."""

from __future__ import annotations

import logging
import re

__all__ = ["RedactQueryCredentials", "install_access_log_redaction", "redact_query"]

_SENSITIVE = re.compile(r"([?&][^=&#]*(?:signature|token|key|secret|password|credential)[^=&#]*=)[^&#\s]*", re.I)


def redact_query(target: str) -> str:
    return _SENSITIVE.sub(r"\1REDACTED", target)


class RedactQueryCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = redact_query(record.msg)
        return True


def install_access_log_redaction() -> None:
    """On uvicorn's access logger, once per process."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryCredentials) for f in access.filters):
        access.addFilter(RedactQueryCredentials())
