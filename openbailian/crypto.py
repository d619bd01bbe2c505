"""Server keys kept in the home folder, and secrets encrypted at rest with them.

``SecretBox`` seals what the server must be able to read back (AccessKey secrets, to
verify a signature; plugin service tokens, to send them) with Fernet (AES-128-CBC +
HMAC-SHA256, from ``cryptography``). Its key is ``OPENBAILIAN_SECRET_KEY`` when set,
else a random one created once in ``<home>/secret.key``, readable by the owner only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from openbailian.config import Settings
from openbailian.errors import SecretUnreadable

__all__ = ["SecretBox", "SecretUnreadable", "owner_only_secret"]

SEALED_PREFIX = "fernet:"


def owner_only_secret(path: Path, make: str | None = None) -> str:
    """The secret kept in ``path``, created there (mode 0600) with ``make`` or 32 random bytes the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as out:
            out.write((make or secrets.token_hex(32)) + "\n")
    return path.read_text().strip()


class SecretBox:
    def __init__(self, key_material: str) -> None:
        digest = hashlib.sha256(key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.secret_key or owner_only_secret(settings.home / "secret.key"))

    def seal(self, plaintext: str) -> str:
        return SEALED_PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            raise SecretUnreadable("not a sealed value")
        try:
            return self._fernet.decrypt(sealed[len(SEALED_PREFIX) :].encode()).decode()
        except InvalidToken as error:
            raise SecretUnreadable("sealed with another key, or altered") from error

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(SEALED_PREFIX)
