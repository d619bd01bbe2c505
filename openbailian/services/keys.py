"""API keys: ``sk-`` + 32 hex digits, shown once, stored as a SHA-256 hash.

Each key also has an AccessKey pair (``access_key_id`` / ``access_key_secret``) for
ACS3-HMAC-SHA256 signed OpenAPI calls: the secret is shown once and kept sealed with
``crypto.SecretBox`` (the server must read it back to verify a signature). Revoking the
key revokes both forms; both are read from the database on every call.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openbailian.crypto import SecretBox, SecretUnreadable
from openbailian.engine.call import AppStamp, SessionAhead
from openbailian.errors import InvalidApiKey, NotFound, SignatureNonceUsed
from openbailian.services.apps import stamp_of
from openbailian.services.limits import AddressCheck
from openbailian.services.lookup import get_in_workspace
from openbailian.services.workspaces import ensure_workspace
from openbailian.storage.buckets import TOKENS_OF
from openbailian.storage.db import Database, Prepared
from openbailian.storage.models import ApiKey, App, SignatureNonce, utcnow

__all__ = [
    "CreatedKey",
    "KeyCheck",
    "AccessKey",
    "check_access_key",
    "remember_nonce",
    "check_key",
    "create_key",
    "create_access_key",
    "get_key",
    "hash_key",
    "list_keys",
    "revoke_key",
]


@dataclass(frozen=True)
class CreatedKey:
    id: str
    api_key: str
    workspace_id: str
    access_key_id: str
    access_key_secret: str  # shown once, like api_key


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An AccessKey pair's key, read for a signed call (the secret opened)."""

    key_id: str
    workspace_id: str
    access_key_id: str
    secret: str


_ALPHANUMERIC = string.ascii_letters + string.digits


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


@dataclass(frozen=True, slots=True)
class KeyCheck:
    key_id: str
    workspace_id: str
    app: AppStamp | None  # the row of the app the call names, read in the same query
    session: SessionAhead | None = None  # the session the call names, read in the same round trip


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


async def create_key(
    session: AsyncSession, workspace_id: str, name: str = "", *, box: SecretBox
) -> CreatedKey:
    """A new key and its AccessKey pair; ``box`` seals the AccessKey secret."""
    api_key = "sk-" + secrets.token_hex(16)
    display = f"{api_key[:6]}…{api_key[-4:]}"
    return await _store_key(session, workspace_id, name, api_key, hash_key(api_key), display, box)


# The key_hash of an AccessKey made on its own: no SHA-256 hex digest starts so, so no
# API key can ever match the row (it is used only through its AccessKey pair).
NO_API_KEY = "no-api-key:"


async def create_access_key(
    session: AsyncSession, workspace_id: str, name: str = "", *, box: SecretBox
) -> CreatedKey:
    """An AccessKey pair without an API key (``api_key`` is empty): for signed OpenAPI calls."""
    return await _store_key(session, workspace_id, name, "", NO_API_KEY + secrets.token_hex(16), "", box)


async def _store_key(
    session: AsyncSession,
    workspace_id: str,
    name: str,
    api_key: str,
    key_hash: str,
    display: str,
    box: SecretBox,
) -> CreatedKey:
    await ensure_workspace(session, workspace_id)
    access_key_id = "OBAK" + _random_text(20)
    access_key_secret = _random_text(30)
    row = ApiKey(
        id=uuid.uuid4().hex,
        workspace_id=workspace_id,
        key_hash=key_hash,
        display=display,
        name=name,
        access_key_id=access_key_id,
        access_key_secret=box.seal(access_key_secret),
    )
    session.add(row)
    await session.flush()
    return CreatedKey(
        id=row.id,
        api_key=api_key,
        workspace_id=workspace_id,
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
    )


async def list_keys(
    session: AsyncSession, workspace_id: str | None = None, *, kind: str = "any"
) -> list[ApiKey]:
    """The keys, oldest first; ``kind`` "api_key": those with an API key, "access_key": those
    with an AccessKey pair."""
    query = select(ApiKey).order_by(ApiKey.created_at)
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    if kind == "api_key":
        query = query.where(ApiKey.key_hash.not_like(NO_API_KEY + "%"))
    elif kind == "access_key":
        query = query.where(ApiKey.access_key_id.is_not(None))
    return list(await session.scalars(query))


async def get_key(session: AsyncSession, key_id: str, workspace_id: str) -> ApiKey:
    """A key of the workspace; another workspace's answers like a missing one."""
    return await get_in_workspace(session, ApiKey, key_id, workspace_id, missing=NotFound, label="Key")


async def revoke_key(session: AsyncSession, key_id: str) -> None:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key '{key_id}' does not exist")
    row.revoked_at = utcnow()


# Built once: each call only binds its values (the compiled SQL is cached per engine).
_KEY = select(ApiKey.id, ApiKey.workspace_id, ApiKey.revoked_at).where(
    ApiKey.key_hash == bindparam("key_hash")
)
_KEY_AND_APP = _KEY.add_columns(
    App.workspace_id.label("app_workspace_id"), App.published_version
).outerjoin(App, App.id == bindparam("app_id"))
# (with the app's row, with the source address's failure bucket) → the one query of a key check.
_KEY_QUERIES = {
    (False, False): Prepared(_KEY),
    (True, False): Prepared(_KEY_AND_APP),
    (False, True): Prepared(_KEY.add_columns(TOKENS_OF.label("address_tokens"))),
    (True, True): Prepared(_KEY_AND_APP.add_columns(TOKENS_OF.label("address_tokens"))),
}


async def check_key(
    db: Database,
    api_key: str,
    app_id: str | None = None,
    *,
    address: AddressCheck | None = None,
    session: Callable[[Connection], SessionAhead] | None = None,
) -> KeyCheck:
    """The key's owner, read on every call so a revoked key is refused at once by every
    process; with ``app_id``, that app's row comes in the same query (one round trip), with
    ``address`` the source address's failure budget, checked first (``RateLimited``), and
    ``session`` (``SessionStore.read_ahead``) reads the named session in the same round trip."""
    params: dict[str, Any] = {"key_hash": hash_key(api_key)}
    if app_id is not None:
        params["app_id"] = app_id
    if address is not None:
        params.update(address.params)
    query = _KEY_QUERIES[(app_id is not None, address is not None)]

    def work(conn: Connection) -> tuple[Any, SessionAhead | None]:
        row = query.first(conn, params)
        return row, (session(conn) if session is not None and row is not None else None)

    row, ahead = await db.read(work, quick=True)
    if address is not None:
        if row is None:  # no such key: the address's budget in a read of its own (failures only)
            await address.limiter.check(address.address)
        else:
            address.verdict(row.address_tokens)
    if row is None or row.revoked_at is not None:
        raise InvalidApiKey("Invalid API-key provided.")
    app = stamp_of(row.app_workspace_id, row.published_version) if app_id is not None else None
    return KeyCheck(key_id=row.id, workspace_id=row.workspace_id, app=app, session=ahead)


async def check_access_key(db: Database, box: SecretBox, access_key_id: str) -> AccessKey:
    """The key of an AccessKey id with its secret opened, read on every call (revocation
    is seen at once by every process)."""
    query = select(ApiKey.id, ApiKey.workspace_id, ApiKey.revoked_at, ApiKey.access_key_secret).where(
        ApiKey.access_key_id == access_key_id
    )
    async with db.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.revoked_at is not None or not row.access_key_secret:
        raise InvalidApiKey("The AccessKey ID is unknown or revoked.")
    try:
        secret = box.open(row.access_key_secret)
    except SecretUnreadable:  # the server key changed since the pair was made
        raise InvalidApiKey("This AccessKey cannot be verified by this server (its secret key changed).") from None
    return AccessKey(key_id=row.id, workspace_id=row.workspace_id, access_key_id=access_key_id, secret=secret)


async def remember_nonce(db: Database, access_key_id: str, nonce: str, expires_at: datetime) -> None:
    """Record a signature nonce until ``expires_at``; SignatureNonceUsed when it was seen
    already (by any process: the row is in the database). Expired nonces are dropped."""
    try:
        async with db.transaction() as session:
            await session.execute(delete(SignatureNonce).where(SignatureNonce.expires_at < utcnow()))
            session.add(SignatureNonce(access_key_id=access_key_id, nonce=nonce, expires_at=expires_at))
            await session.flush()
    except IntegrityError:
        raise SignatureNonceUsed(
            "The x-acs-signature-nonce was already used: each signed request needs a new nonce."
        ) from None
