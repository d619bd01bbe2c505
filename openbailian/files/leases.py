"""Signed upload URLs: HMAC-SHA256 over (lease id, expiry) with a server secret.

The secret is ``files_signing_secret`` when set, else a random one created once
in ``<home>/files.key`` (readable by the owner only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

from openbailian.config import Settings
from openbailian.crypto import owner_only_secret
from openbailian.errors import AccessDenied

__all__ = ["UploadSigner", "load_secret", "UPLOAD_PATH", "DOWNLOAD_PATH"]

UPLOAD_PATH = "/manage/v1/files/upload"
DOWNLOAD_PATH = "/manage/v1/files/download"


def load_secret(settings: Settings) -> bytes:
    if settings.files_signing_secret:
        return settings.files_signing_secret.encode()
    return owner_only_secret(settings.home / "files.key").encode()


class UploadSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _signature(self, lease_id: str, expires: int) -> str:
        message = f"{lease_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, base_url: str, lease_id: str, expires_at: float) -> str:
        expires = int(expires_at)
        query = urlencode({"Expires": expires, "Signature": self._signature(lease_id, expires)})
        return f"{base_url.rstrip('/')}{UPLOAD_PATH}/{lease_id}?{query}"

    def download_url(self, base_url: str, file_id: str, what: str, expires_at: float) -> str:
        """A link to a file's bytes (``what="origin"``) or parse result (``"parsed"``) until ``expires_at``."""
        expires = int(expires_at)
        query = urlencode({"Expires": expires, "Signature": self._signature(f"download/{what}/{file_id}", expires)})
        return f"{base_url.rstrip('/')}{DOWNLOAD_PATH}/{file_id}/{what}?{query}"

    def verify_download(
        self, file_id: str, what: str, expires: str | None, signature: str | None, now: float | None = None
    ) -> None:
        """Raise AccessDenied unless this server made the link and it has not expired."""
        if not expires or not signature or not expires.isdigit():
            raise AccessDenied("The download link is not signed: use the URL DescribeFile returned")
        if not hmac.compare_digest(self._signature(f"download/{what}/{file_id}", int(expires)), signature):
            raise AccessDenied("The download link's signature does not match: use the URL as returned")
        if (now if now is not None else time.time()) > int(expires):
            raise AccessDenied("The download link has expired: call DescribeFile for a new one")

    def extra_header(self, lease_id: str, workspace_id: str) -> str:
        """The ``X-bailian-extra`` value: which lease and workspace the upload is for."""
        body = json.dumps({"lease_id": lease_id, "workspace_id": workspace_id}, separators=(",", ":"))
        return base64.urlsafe_b64encode(body.encode()).decode()

    def verify(self, lease_id: str, expires: str | None, signature: str | None, now: float | None = None) -> None:
        """Raise AccessDenied unless the URL was made by this server and has not expired."""
        if not expires or not signature or not expires.isdigit():
            raise AccessDenied("The upload URL is not signed: use the Url from ApplyFileUploadLease")
        if not hmac.compare_digest(self._signature(lease_id, int(expires)), signature):
            raise AccessDenied("The upload URL's signature does not match: use the Url as returned")
        if (now if now is not None else time.time()) > int(expires):
            raise AccessDenied(
                "The upload lease has expired: apply for a new one with ApplyFileUploadLease"
            )
