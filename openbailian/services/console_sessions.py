"""Console sign-in: the administrator token (every workspace) or a workspace's API key (that
workspace only) opens a server-side session; the browser only holds its random token."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from openbailian.crypto import SecretBox, SecretUnreadable
from openbailian.errors import AccessDenied, InvalidApiKey
from openbailian.services.keys import check_key
from openbailian.services.workspaces import ensure_workspace, list_workspaces
from openbailian.storage.console_models import ConsoleSession
from openbailian.storage.db import Database
from openbailian.storage.models import ApiKey, utcnow

__all__ = [
    "ConsoleUser",
    "SignedIn",
    "sign_in",
    "signed_in_user",
    "sign_out",
    "switch_workspace",
    "put_flash",
    "take_flash",
]

DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """Who is signed in: an administrator (viewing ``workspace_id``) or one workspace's key."""

    is_admin: bool
    workspace_id: str
    csrf_token: str
    key_id: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    token: str  # for the cookie only: never stored, never shown
    user: ConsoleUser


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def sign_in(db: Database, credential: str, *, admin_token: str, hours: float) -> SignedIn:
    """A new session for the administrator token or a live API key; anything else is refused."""
    credential = credential.strip()
    if not credential:
        raise InvalidApiKey("Enter the administrator token or an API key")
    is_admin = bool(admin_token) and hmac.compare_digest(credential.encode(), admin_token.encode())
    key_id: str | None = None
    if is_admin:
        async with db.session() as session:
            workspaces = await list_workspaces(session)
        workspace_id = workspaces[0].id if workspaces else DEFAULT_WORKSPACE
    else:
        checked = await check_key(db, credential)  # InvalidApiKey when unknown or revoked
        key_id, workspace_id = checked.key_id, checked.workspace_id
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(
        token_hash=_hash(token),
        is_admin=is_admin,
        key_id=key_id,
        workspace_id=workspace_id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + timedelta(hours=hours),
    )
    async with db.transaction() as session:
        await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < utcnow()))
        session.add(row)
    return SignedIn(token=token, user=_user(row))


def _user(row: ConsoleSession) -> ConsoleUser:
    return ConsoleUser(
        is_admin=row.is_admin,
        workspace_id=row.workspace_id or DEFAULT_WORKSPACE,
        csrf_token=row.csrf_token,
        key_id=row.key_id,
        expires_at=_aware(row.expires_at),
    )


async def signed_in_user(db: Database, token: str | None) -> ConsoleUser | None:
    """The session's user; None when the token is unknown, expired, or its key was revoked."""
    if not token:
        return None
    query = (
        select(ConsoleSession, ApiKey.revoked_at)
        .outerjoin(ApiKey, ApiKey.id == ConsoleSession.key_id)
        .where(ConsoleSession.token_hash == _hash(token))
    )
    async with db.session() as session:
        found = (await session.execute(query)).first()
    if found is None:
        return None
    row, revoked_at = found
    if _aware(row.expires_at) <= utcnow() or revoked_at is not None:
        await sign_out(db, token)
        return None
    return _user(row)


async def sign_out(db: Database, token: str | None) -> None:
    if not token:
        return
    async with db.transaction() as session:
        await session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _hash(token)))


async def switch_workspace(db: Database, token: str, user: ConsoleUser, workspace_id: str) -> None:
    """An administrator views another workspace (made when new); a key's session cannot."""
    if not user.is_admin:
        raise AccessDenied("A workspace API key can only see its own workspace")
    async with db.transaction() as session:
        await ensure_workspace(session, workspace_id)
        row = await session.get(ConsoleSession, _hash(token))
        if row is not None:
            row.workspace_id = workspace_id


async def put_flash(db: Database, token: str, box: SecretBox, value: dict[str, str]) -> None:
    """Keep ``value`` for the session's next page (sealed: it may hold a new key's secrets)."""
    async with db.transaction() as session:
        row = await session.get(ConsoleSession, _hash(token))
        if row is not None:
            row.flash = box.seal(json.dumps(value))


async def take_flash(db: Database, token: str | None, box: SecretBox) -> dict[str, str] | None:
    """The session's flash, cleared in the same transaction: a reload shows nothing again."""
    if not token:
        return None
    query = select(ConsoleSession).where(ConsoleSession.token_hash == _hash(token)).with_for_update()
    async with db.transaction() as session:
        row = (await session.scalars(query)).first()
        if row is None or row.flash is None:
            return None
        sealed, row.flash = row.flash, None
    try:
        value = json.loads(box.open(sealed))
    except (SecretUnreadable, ValueError):  # the server key changed in between
        return None
    return value if isinstance(value, dict) else None
