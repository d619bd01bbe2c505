"""Outbound HTTP for plugins, behind a guard against server-side request forgery.

Every hop (the first request and each redirect, followed by hand) is checked:
the scheme must be http(s); the host is parsed the way C resolvers read it
(``2130706433``, ``0x7f.0.0.1``, ``0177.1``, ``[::1]``, ``[::ffff:127.0.0.1]``) or
resolved through DNS, and *every* address must be public — not loopback,
private, link-local, multicast, reserved, unspecified, shared (100.64/10), or a
cloud metadata address. The connection then goes to the checked address (the
URL's host stays in ``Host`` and TLS SNI), so DNS cannot change its answer
between check and use. An administrator may allow-list ``host[:port]``
entries (``OPENBAILIAN_OUTBOUND_ALLOW``, comma-separated, matched against the
host as written in the URL); allow-listed hosts skip the address check.
Requests have a total timeout and a cap on the response size; a redirect to
another origin drops every header the caller set (credentials stay home).
``fetch`` (plugins) cuts an oversize answer; ``download`` (files a call names by
URL) refuses it, and refuses a content type its caller does not take before
reading the body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from openbailian.errors import OutboundBlocked, OutboundError

__all__ = [
    "OutboundBlocked",
    "OutboundError",
    "AllowList",
    "OutboundGuard",
    "OutboundResponse",
    "Download",
    "literal_ip",
    "blocked_reason",
    "fetch",
    "download",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
# The media type of a response (lower-cased, no parameters) → the most bytes taken
# of it; raises OutboundError saying why when the type is not wanted.
SizeLimit = Callable[[str], int]

_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
}
_REDIRECTS = {301, 302, 303, 307, 308}


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, in any form ``inet_aton`` accepts."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    try:
        numbers = [_c_number(p) for p in parts]
    except ValueError:
        return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def _c_number(text: str) -> int:
    lowered = text.lower()
    if lowered.startswith("0x"):
        return int(lowered[2:] or "0", 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8)
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def blocked_reason(address: IPAddress) -> str | None:
    """Why this address may not be reached, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            address.teredo[1] if address.teredo else None
        )
        if embedded is not None:
            return blocked_reason(embedded)
    if address in _METADATA:
        return "a cloud metadata address"
    for attribute in (
        "is_loopback",
        "is_private",
        "is_link_local",
        "is_multicast",
        "is_reserved",
        "is_unspecified",
    ):
        if getattr(address, attribute):
            return f"a {attribute[3:].replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True, slots=True)
class AllowList:
    entries: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def parse(cls, setting: str) -> AllowList:
        entries = set()
        for raw in setting.split(","):
            raw = raw.strip().lower()
            if not raw:
                continue
            host, port = raw, None
            if raw.startswith("["):
                host, _, rest = raw[1:].partition("]")
                port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
            elif raw.count(":") == 1:
                name, _, number = raw.partition(":")
                if number.isdigit():
                    host, port = name, int(number)
            entries.add((host, port))
        return cls(frozenset(entries))

    def allows(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return (host, port) in self.entries or (host, None) in self.entries


async def _system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OutboundError(f"cannot resolve host {host!r}: {error.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class OutboundGuard:
    def __init__(self, allow: AllowList | None = None, resolver: Resolver | None = None) -> None:
        self.allow = allow or AllowList()
        self._resolve = resolver or _system_resolver

    async def check(self, url: httpx.URL) -> str | None:
        """The address to connect to (None: allow-listed, connect as usual); raises if refused."""
        if url.scheme not in ("http", "https"):
            raise OutboundBlocked(f"only http and https URLs are allowed, not {url.scheme!r}")
        host = url.host
        if not host:
            raise OutboundBlocked("the URL has no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        if self.allow.allows(host, port):
            return None
        literal = literal_ip(host)
        addresses = [str(literal)] if literal else await self._resolve(host, port)
        if not addresses:
            raise OutboundError(f"host {host!r} has no address")
        for text in addresses:
            reason = blocked_reason(ipaddress.ip_address(text.split("%", 1)[0]))
            if reason:
                raise OutboundBlocked(
                    f"refused to connect to {host!r}: it resolves to {reason} "
                    "(an administrator can allow it with OPENBAILIAN_OUTBOUND_ALLOW)"
                )
        return addresses[0]


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int
    url: str
    content_type: str
    text: str
    truncated: bool


async def fetch(
    guard: OutboundGuard,
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = 256 * 1024,
    max_redirects: int = 5,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OutboundResponse:
    """One guarded request, redirects followed by hand and checked, within ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(
            _fetch(guard, method, url, params, json, dict(headers or {}), max_redirects, transport,
                   lambda response, target: _as_text(response, target, max_bytes)),
            timeout,
        )
    except TimeoutError:
        raise OutboundError(f"the request took longer than {timeout:g} s") from None
    except httpx.InvalidURL as error:
        raise OutboundError(f"invalid URL: {error}") from None
    except httpx.HTTPError as error:
        raise OutboundError(f"request failed: {type(error).__name__}") from None


_Read = TypeVar("_Read")


async def _fetch(
    guard: OutboundGuard,
    method: str,
    url: str,
    params: Mapping[str, Any] | None,
    json: Any,
    headers: dict[str, str],
    max_redirects: int,
    transport: httpx.AsyncBaseTransport | None,
    read: Callable[[httpx.Response, httpx.URL], Awaitable[_Read]],
) -> _Read:
    target = httpx.URL(url, params=params) if params else httpx.URL(url)
    # trust_env=False: proxies from the environment would bypass the address check.
    async with httpx.AsyncClient(
        trust_env=False, follow_redirects=False, transport=transport, timeout=None
    ) as client:
        for _ in range(max_redirects + 1):
            request = await _pinned_request(client, guard, method, target, json, headers)
            response = await client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    following = target.join(location)
                    if _origin(following) != _origin(target):
                        headers = {}  # never carry credentials to another origin
                    target = following
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method != "GET"
                    ):
                        method, json = "GET", None
                    continue
                return await read(response, target)
            finally:
                await response.aclose()
    raise OutboundError(f"more than {max_redirects} redirects")


async def _as_text(response: httpx.Response, target: httpx.URL, max_bytes: int) -> OutboundResponse:
    body, truncated = await _read_capped(response, max_bytes)
    return OutboundResponse(
        status=response.status_code,
        url=str(target),
        content_type=response.headers.get("content-type", ""),
        text=body.decode(response.encoding or "utf-8", errors="replace"),
        truncated=truncated,
    )


@dataclass(frozen=True, slots=True)
class Download:
    url: str  # where the bytes came from, after redirects
    media_type: str  # lower-cased, without parameters ("image/png")
    data: bytes


async def download(
    guard: OutboundGuard,
    url: str,
    *,
    size_limit: SizeLimit,
    timeout: float = 20.0,
    max_redirects: int = 5,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Download:
    """GET a file through the guard, whole or not at all.

    Refused, each with its reason: an answer other than 200, a media type
    ``size_limit`` refuses (checked before the body is read), a body over the
    limit (declared or counted), more than ``timeout`` seconds in all.
    """
    async def read(response: httpx.Response, target: httpx.URL) -> Download:
        if response.status_code != 200:
            raise OutboundError(f"the server answered HTTP {response.status_code}")
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        limit = size_limit(media_type)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise OutboundError(f"the file is {int(declared)} bytes, more than the {limit}-byte limit")
        body, truncated = await _read_capped(response, limit)
        if truncated:
            raise OutboundError(f"the file is larger than the {limit}-byte limit")
        return Download(url=str(target), media_type=media_type, data=body)

    try:
        return await asyncio.wait_for(
            _fetch(guard, "GET", url, None, None, {}, max_redirects, transport, read), timeout
        )
    except TimeoutError:
        raise OutboundError(f"the download took longer than {timeout:g} s") from None
    except httpx.InvalidURL as error:
        raise OutboundError(f"invalid URL: {error}") from None
    except httpx.HTTPError as error:
        raise OutboundError(f"the download failed: {type(error).__name__}") from None


async def _pinned_request(
    client: httpx.AsyncClient,
    guard: OutboundGuard,
    method: str,
    target: httpx.URL,
    json: Any,
    headers: dict[str, str],
) -> httpx.Request:
    address = await guard.check(target)
    headers = {k: v for k, v in headers.items() if k.lower() != "host"}
    if address is None:
        return client.build_request(method, target, json=json, headers=headers)
    host_header = target.netloc.decode("ascii")
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return client.build_request(
        method,
        target.copy_with(host=address),
        json=json,
        headers={**headers, "Host": host_header},
        extensions=extensions,
    )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


async def _read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    body = bytearray()
    async for piece in response.aiter_bytes():
        body.extend(piece)
        if len(body) > max_bytes:
            return bytes(body[:max_bytes]), True
    return bytes(body), False
