"""The outbound guard refuses internal addresses in every spelling, and on every redirect."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from openbailian.tools.outbound import (
    AllowList,
    OutboundBlocked,
    OutboundError,
    OutboundGuard,
    blocked_reason,
    fetch,
    literal_ip,
)


@pytest.mark.parametrize(
    ("host", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
     ("127.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("[::1]", "::1"),
     ("::ffff:127.0.0.1", "::ffff:7f00:1"), ("10.0.0.1", "10.0.0.1"), ("example.com", None),
     ("1.2.3.4.5", None), ("256.1.1.1", None)],
)
def test_literal_ip_reads_every_c_resolver_form(host, address):
    result = literal_ip(host)
    assert (str(result) if result else None) == address


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.100.100.200",
     "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "::", "fe80::1", "fc00::1",
     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "fd00:ec2::254"],
)
def test_internal_addresses_are_refused(address):
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/",
     "http://[::1]/", "http://2130706433/", "http://0x7f.0.0.1/", "http://[::ffff:127.0.0.1]/",
     "http://localhost/", "file:///etc/passwd", "gopher://127.0.0.1/"],
)
async def test_fetch_refuses_internal_destinations(url):
    with pytest.raises(OutboundBlocked):
        await fetch(OutboundGuard(), "GET", url)


async def test_a_name_resolving_to_loopback_is_refused():
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "127.0.0.1"]  # one bad address is enough

    with pytest.raises(OutboundBlocked):
        await OutboundGuard(resolver=resolver).check(httpx.URL("http://rebind.test/"))


async def test_allow_list_matches_host_and_port():
    allow = AllowList.parse(" 127.0.0.1:8080, internal.example ,[::1]:9000")
    assert allow.allows("127.0.0.1", 8080) and not allow.allows("127.0.0.1", 8081)
    assert allow.allows("INTERNAL.example", 443) and allow.allows("::1", 9000)
    assert not allow.allows("localhost", 8080)


async def test_allow_listed_tool_is_reached(tool_server):
    guard = OutboundGuard(AllowList.parse(f"127.0.0.1:{tool_server.port}"))
    response = await fetch(guard, "GET", f"{tool_server.url}/weather", params={"city": "北京"})
    assert response.status == 200 and "晴" in response.text
    # Not allow-listed: the same server is refused and never contacted.
    before = len(tool_server.requests)
    with pytest.raises(OutboundBlocked):
        await fetch(OutboundGuard(), "GET", f"{tool_server.url}/weather")
    assert len(tool_server.requests) == before


async def test_a_redirect_to_an_internal_address_is_refused(tool_server):
    guard = OutboundGuard(AllowList.parse(f"localhost:{tool_server.port}"))
    for target in ["http://127.0.0.1:1/secret", "http://169.254.169.254/", "http://[::1]:1/",
                   "http://2130706433/"]:
        with pytest.raises(OutboundBlocked):
            await fetch(guard, "GET", f"http://localhost:{tool_server.port}/redirect", params={"to": target})


async def test_redirect_loops_and_size_and_time_are_capped(tool_server):
    guard = OutboundGuard(AllowList.parse(f"127.0.0.1:{tool_server.port}"))
    loop = f"{tool_server.url}/redirect?to={tool_server.url}/redirect%3Fto%3D{tool_server.url}/x"
    response = await fetch(guard, "GET", loop, max_redirects=5)
    assert response.status == 200
    with pytest.raises(OutboundError, match="redirects"):
        await fetch(guard, "GET", loop, max_redirects=1)
    big = await fetch(guard, "GET", f"{tool_server.url}/big", max_bytes=1000)
    assert big.truncated and len(big.text) == 1000

    async def slow(host: str, port: int) -> list[str]:
        import asyncio

        await asyncio.sleep(5)
        return ["8.8.8.8"]

    with pytest.raises(OutboundError, match="longer than"):
        await fetch(OutboundGuard(resolver=slow), "GET", "http://slow.test/", timeout=0.2)
