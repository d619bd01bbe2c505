"""The administrator token, which guards workspace and key management over HTTP."""

from __future__ import annotations

import os
import secrets

from openbailian.config import Settings

__all__ = ["admin_token"]


def admin_token(settings: Settings) -> str:
    """``OPENBAILIAN_ADMIN_TOKEN``, else one generated once into ``$HOME/admin_token``."""
    if settings.admin_token:
        return settings.admin_token
    path = settings.home / "admin_token"
    if path.exists():
        return path.read_text().strip()
    settings.home.mkdir(parents=True, exist_ok=True)
    token = "ob-admin-" + secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token
