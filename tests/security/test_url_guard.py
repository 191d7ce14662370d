"""The MCP URL guard's policy, and its connect-time check inside the HTTP client."""

from __future__ import annotations

import ipaddress

import httpx2
import pytest

from loom.config import ConfigError, McpGuardSettings
from loom.errors import InvalidRequestError
from loom.security.url_guard import UrlPolicy, guarded_transport
from tests.support.servers import serve


def ip(text: str):
    return ipaddress.ip_address(text)


def policy(**kwargs) -> UrlPolicy:
    return UrlPolicy(McpGuardSettings(**kwargs))


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS/GCP/Azure metadata
        "fd00:ec2::254",  # AWS IPv6 metadata
        "fe80::1",
        "100.100.100.200",  # Alibaba metadata
        "0.0.0.0",
        "::ffff:169.254.169.254",  # IPv4-mapped
    ],
)
def test_metadata_and_link_local_are_refused_by_default(address):
    assert policy().refusal("h", [ip(address)]) is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.1", "172.16.0.1"])
def test_loopback_and_private_need_to_be_allowed(address):
    assert "allow it" in policy().refusal("h", [ip(address)])
    assert (
        policy(
            allow=["127.0.0.0/8", "::1", "10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"]
        ).refusal("h", [ip(address)])
        is None
    )


def test_public_addresses_pass_unless_allow_public_is_off():
    assert policy().refusal("example.com", [ip("93.184.215.14")]) is None
    strict = policy(allow=["mcp.example.com"], allow_public=False)
    assert strict.refusal("example.com", [ip("93.184.215.14")]) is not None
    assert strict.refusal("mcp.example.com", [ip("93.184.215.14")]) is None


def test_deny_wins_and_every_address_counts():
    p = policy(allow=["10.0.0.0/8", ".corp.example"], deny=["10.9.0.0/16", "bad.corp.example"])
    assert p.refusal("a.corp.example", [ip("10.1.0.1")]) is None
    assert p.refusal("bad.corp.example", [ip("10.1.0.1")]) is not None
    assert p.refusal("x", [ip("10.9.1.1")]) is not None
    # A name with one good and one denied address is refused: either may be connected to.
    assert policy().refusal("two", [ip("93.184.215.14"), ip("169.254.169.254")]) is not None
    assert policy().refusal("metadata.google.internal", [ip("93.184.215.14")]) is not None


def test_bad_entries_fail_at_start_up():
    with pytest.raises(ConfigError, match=r"mcp_guard\.allow"):
        policy(allow=["http://x/"])


async def test_a_name_resolving_to_loopback_is_refused_with_the_param():
    with pytest.raises(InvalidRequestError) as caught:
        await policy().check_url("http://localhost:9/mcp", "tools[2].server_url", 5)
    assert caught.value.param == "tools[2].server_url"
    assert "127.0.0.1" in caught.value.message or "::1" in caught.value.message
    await policy(allow=["127.0.0.0/8", "::1"]).check_url("http://localhost:9/mcp", "p", 5)


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "127.1", "[::ffff:127.0.0.1]"])
async def test_other_spellings_of_loopback_are_refused(host):
    with pytest.raises(InvalidRequestError, match="loopback"):
        await policy().check_url(f"http://{host}:9/mcp", "tools[0].server_url", 5)


async def test_an_unresolvable_name_fails_at_connect_not_at_the_request():
    # Not refused up front: the server is then reported unreachable, like one that is down.
    await policy().check_url("http://no-such-host.invalid/mcp", "tools[0].server_url", 5)
    async with httpx2.AsyncClient(transport=guarded_transport(policy())) as client:
        with pytest.raises(httpx2.ConnectError, match="cannot resolve"):
            await client.get("http://no-such-host.invalid/mcp")


async def _hello(scope, receive, send):
    """A minimal ASGI app on loopback: answers `hello`."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_the_connection_itself_is_checked():
    with serve(_hello) as server:
        allowed = httpx2.AsyncClient(transport=guarded_transport(policy(allow=["127.0.0.0/8"])))
        async with allowed:
            assert (await allowed.get(f"http://localhost:{server.port}/")).text == "hello"
        refused = httpx2.AsyncClient(transport=guarded_transport(policy()))
        async with refused:
            with pytest.raises(httpx2.ConnectError, match="URL guard"):
                await refused.get(f"http://localhost:{server.port}/")


class Rebinding(UrlPolicy):
    """A DNS answer that changes: public when the request is checked, loopback after."""

    def __init__(self) -> None:
        super().__init__(McpGuardSettings())
        self.answers = [[ip("93.184.215.14")], [ip("127.0.0.1")]]

    async def resolve(self, host, port):
        return self.answers.pop(0)


async def test_a_rebinding_answer_is_refused_at_connect_time():
    with serve(_hello) as server:
        rebinding = Rebinding()
        url = f"http://rebind.example:{server.port}/"
        await rebinding.check_url(url, "tools[0].server_url", 5)  # passes: "public"
        async with httpx2.AsyncClient(transport=guarded_transport(rebinding)) as client:
            with pytest.raises(httpx2.ConnectError, match=r"127\.0\.0\.1"):
                await client.get(url)
