"""Who calls the OpenAPI face: an ACS3-HMAC-SHA256 signature or ``x-acs-bearer-token: sk-…``.

A signature is verified as ``alibabacloud_tea_openapi.utils.Utils.get_authorization``
computes it: the canonical request is ``METHOD\\nPATH\\nQUERY\\nHEADERS\\nSIGNED_HEADERS\\n
HEX_SHA256(body)`` (the path as sent, still percent-encoded; the query sorted, values
percent-encoded with ``~`` unreserved; the signed headers lower-cased, sorted, ``k:v\\n``),
the string to sign ``ACS3-HMAC-SHA256\\n`` + its hex SHA-256, the signature the hex
HMAC-SHA256 of that with the AccessKey secret. ``x-acs-date`` must be within 15 minutes
of the server's clock and ``x-acs-signature-nonce`` new: nonces are kept in the database
for that window, so a replay is refused by every process. The key is read from the
database on every call, so a revoked key fails at once, in both forms.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request

from openbailian.api.deps import Caller, RuntimeDep
from openbailian.api.openapi.params import read_body
from openbailian.crypto import SecretBox
from openbailian.errors import (
    InvalidApiKey,
    InvalidParameter,
    SignatureExpired,
    SignatureMismatch,
    WorkspaceAccessDenied,
)
from openbailian.runtime import Runtime
from openbailian.services.keys import check_access_key, check_key, remember_nonce

__all__ = [
    "ALGORITHM",
    "SIGNATURE_WINDOW",
    "OpenApiCaller",
    "get_openapi_caller",
    "canonical_request",
    "signature_of",
]

ALGORITHM = "ACS3-HMAC-SHA256"
SIGNATURE_WINDOW = timedelta(minutes=15)
# Headers a signature must cover, or the date, nonce or body could be swapped under it.
_MUST_SIGN = ("host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")
_MAX_NONCE = 128


def canonical_request(
    method: str, raw_path: str, query: list[tuple[str, str]], headers: dict[str, list[str]], body_sha256: str
) -> tuple[str, str]:
    """(canonical request, signed-headers list) as the SDK builds them."""
    canonical_query = "&".join(f"{k}={quote(v, safe='~', encoding='utf-8')}" for k, v in sorted(query))
    names = sorted(headers)
    canonical_headers = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in headers[name]))}\n" for name in names
    )
    signed = ";".join(names)
    return f"{method}\n{raw_path or '/'}\n{canonical_query}\n{canonical_headers}\n{signed}\n{body_sha256}", signed


def signature_of(secret: str, canonical: str) -> str:
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes non-ASCII input (a header is any latin-1 text)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _parse_authorization(header: str) -> tuple[str, list[str], str]:
    scheme, _, rest = header.partition(" ")
    if scheme != ALGORITHM:
        raise SignatureMismatch(f"The Authorization header must use {ALGORITHM}")
    fields = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value.strip()
    credential, signed, signature = fields.get("Credential"), fields.get("SignedHeaders"), fields.get("Signature")
    if not credential or not signed or not signature:
        raise SignatureMismatch("The Authorization header needs Credential, SignedHeaders and Signature")
    return credential, [h.strip().lower() for h in signed.split(";") if h.strip()], signature


def _signed_at(request: Request) -> datetime:
    value = request.headers.get("x-acs-date", "")
    try:
        signed_at = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureExpired("x-acs-date must be the UTC time as %Y-%m-%dT%H:%M:%SZ") from None
    if abs(datetime.now(UTC) - signed_at) > SIGNATURE_WINDOW:
        raise SignatureExpired(
            f"x-acs-date {value} is more than {int(SIGNATURE_WINDOW.total_seconds() // 60)} minutes "
            "away from the server's clock"
        )
    return signed_at


def _query_of(request: Request) -> list[tuple[str, str]]:
    pairs = parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):  # the SDK never repeats one; the signature could not cover both
        raise SignatureMismatch("A signed request may not repeat a query parameter")
    return pairs


async def _verify_signature(request: Request, runtime: Runtime, box: SecretBox) -> Caller:
    access_key_id, signed_names, signature = _parse_authorization(request.headers["authorization"])
    missing = [name for name in _MUST_SIGN if name not in signed_names]
    if missing:
        raise SignatureMismatch(f"SignedHeaders must include {', '.join(missing)}")
    headers: dict[str, list[str]] = {}
    for name in signed_names:
        values = request.headers.getlist(name)
        if not values:
            raise SignatureMismatch(f"The signed header {name} is not in the request")
        headers[name] = values
    signed_at = _signed_at(request)
    nonce = request.headers["x-acs-signature-nonce"]
    if not nonce or len(nonce) > _MAX_NONCE:
        raise SignatureMismatch(f"x-acs-signature-nonce must be 1 to {_MAX_NONCE} characters")
    body_sha256 = hashlib.sha256(await read_body(request)).hexdigest()
    if not _same(request.headers["x-acs-content-sha256"].lower(), body_sha256):
        raise SignatureMismatch("x-acs-content-sha256 is not the SHA-256 of the body")
    raw_path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    canonical, _ = canonical_request(request.method, raw_path, _query_of(request), headers, body_sha256)
    key = await check_access_key(runtime.db, box, access_key_id)
    if not _same(signature.lower(), signature_of(key.secret, canonical)):
        raise SignatureMismatch(
            "The request signature does not match: check the AccessKey secret and what is signed"
        )
    await remember_nonce(runtime.db, access_key_id, nonce, signed_at + SIGNATURE_WINDOW)
    return Caller(key_id=key.key_id, workspace_id=key.workspace_id)


async def _authenticate(request: Request, runtime: Runtime) -> Caller:
    bearer = request.headers.get("x-acs-bearer-token")
    if bearer:
        checked = await check_key(runtime.db, bearer.strip())
        return Caller(key_id=checked.key_id, workspace_id=checked.workspace_id)
    if request.headers.get("authorization"):
        return await _verify_signature(request, runtime, request.app.state.secret_box)
    raise InvalidApiKey(
        "No credentials: sign the request (ACS3-HMAC-SHA256 with an AccessKey pair) "
        "or send 'x-acs-bearer-token: sk-...'"
    )


async def get_openapi_caller(request: Request, runtime: RuntimeDep) -> Caller:
    """The authenticated caller; the path's ``WorkspaceId`` must be its key's workspace (403).
    Calls count against the key's rate limit (429 with ``x-acs-retry-after``)."""
    caller = await _authenticate(request, runtime)
    workspace = request.path_params.get("WorkspaceId")
    if workspace is None:
        raise InvalidParameter("The path has no WorkspaceId")
    if workspace != caller.workspace_id:
        raise WorkspaceAccessDenied(
            f"This key belongs to workspace '{caller.workspace_id}', not '{workspace}'"
        )
    await request.app.state.rate_limiter.check(f"openapi:{caller.key_id}")
    return caller


OpenApiCaller = Annotated[Caller, Depends(get_openapi_caller)]
