"""The administrator token, which guards workspace and key management over HTTP."""

from __future__ import annotations

import secrets

from openbailian.config import Settings
from openbailian.crypto import owner_only_secret

__all__ = ["admin_token"]


def admin_token(settings: Settings) -> str:
    """``OPENBAILIAN_ADMIN_TOKEN``, else one generated once into ``$HOME/admin_token``."""
    if settings.admin_token:
        return settings.admin_token
    return owner_only_secret(settings.home / "admin_token", make="ob-admin-" + secrets.token_hex(24))
