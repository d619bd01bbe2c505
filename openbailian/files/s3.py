"""The S3-compatible :class:`~openbailian.files.store.ObjectStore` (AWS S3, MinIO, OSS's S3 API).

Selected by ``OPENBAILIAN_S3_BUCKET`` (``Runtime.build``). Keys are the store's
relative keys under ``OPENBAILIAN_S3_PREFIX``. Besides the four port methods it
can presign a PUT (so an upload lease's bytes go straight to the bucket) and
describe an object (size and MD5, which AddFile checks).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from openbailian.files.store import check_key

if TYPE_CHECKING:
    from openbailian.config import Settings

__all__ = ["S3ObjectStore", "StoredObject", "UPLOAD_CONTENT_TYPE"]

UPLOAD_CONTENT_TYPE = "application/octet-stream"
_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True, slots=True)
class StoredObject:
    size: int
    md5: str | None  # hex; None when the ETag is not an MD5 (a multipart upload)


class S3ObjectStore:
    """Objects in one bucket under a prefix, through boto3 (thread-safe client)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, signer: Any = None) -> None:
        self.client = client
        # Presigned URLs carry the host they were signed for: behind a proxy or in Compose the
        # clients' address of the bucket differs from the API's, so they are signed by a client of that.
        self.signer = signer or client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStore:
        assert settings.s3_bucket
        signer = _client(settings, settings.s3_public_endpoint_url) if settings.s3_public_endpoint_url else None
        return cls(_client(settings, settings.s3_endpoint_url), settings.s3_bucket, settings.s3_prefix, signer=signer)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, source: BinaryIO) -> None:
        self.client.upload_fileobj(source, self.bucket, self._key(key))

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file, then remove it (as the local store's move)."""
        self.client.upload_file(str(path), self.bucket, self._key(key))
        path.unlink(missing_ok=True)

    def _body(self, key: str) -> Any:
        """The object's streaming body; FileNotFoundError when there is none."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self.client.exceptions.ClientError as error:
            if _missing(error):
                raise FileNotFoundError(key) from error
            raise

    def get(self, key: str) -> bytes:
        body = self._body(key)
        try:
            return bytes(body.read())
        finally:
            body.close()

    def download(self, key: str, target: Path) -> None:
        """Write the object to a local file (streamed, for parsers that need a path)."""
        body = self._body(key)
        try:
            with target.open("wb") as out:
                shutil.copyfileobj(body, out, 1024 * 1024)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def stat(self, key: str) -> StoredObject | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as error:
            if _missing(error):
                return None
            raise
        etag = str(head.get("ETag", "")).strip('"').lower()
        md5 = etag if len(etag) == 32 and "-" not in etag else None
        return StoredObject(size=int(head["ContentLength"]), md5=md5)

    def presign_put(self, key: str, *, expires_in: int) -> str:
        """A URL that accepts a PUT of ``Content-Type: application/octet-stream`` to ``key``.

        Size and MD5 are not signed (clients send only the lease's headers): AddFile
        checks them on the stored object instead.
        """
        return str(
            self.signer.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": self._key(key), "ContentType": UPLOAD_CONTENT_TYPE},
                ExpiresIn=max(1, expires_in),
                HttpMethod="PUT",
            )
        )

    def md5(self, key: str) -> str:
        """The hex MD5 of the object's bytes, read through (when the ETag is not one)."""
        digest = hashlib.md5(usedforsecurity=False)
        body = self._body(key)
        try:
            for block in iter(lambda: body.read(1 << 20), b""):
                digest.update(block)
        finally:
            body.close()
        return digest.hexdigest()


def _client(settings: Settings, endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        # Path-style works with MinIO and moto; v4 signatures are what presigned URLs need.
        config=Config(signature_version="s3v4", s3={"addressing_style": settings.s3_addressing_style}),
    )


def _missing(error: Any) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in _MISSING
