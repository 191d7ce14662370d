"""The MCP client of a turn against a real MCP server: both transports, the fallback,
one session per server, failures that name the problem, and bounded waits."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import AsyncExitStack

import pytest

from loom.config import McpGuardSettings
from loom.security.url_guard import UrlPolicy
from loom.tools.mcp_client import McpClients, McpFailure
from loom.tools.mcp_tools import call_outcome, parse_mcp_tool

pytest_plugins = ["tests.support.mcp_server"]  # the MCP server fixtures

# The test servers listen on loopback, which the URL guard refuses unless allowed.
LOOPBACK = UrlPolicy(McpGuardSettings(allow=["127.0.0.0/8", "::1"]))
NAMES = {"greet_everyone", "get_boiling_point", "explode", "place_order"}


def server(url: str, label: str = "t", **extra):
    raw = {"type": "mcp", "server_label": label, "server_url": url, **extra}
    return parse_mcp_tool(raw, "tools[0]")[0]


@pytest.mark.parametrize("transport", ["http_url", "sse_url", "legacy_url"])
async def test_list_and_call_over_one_session(mcp_server, transport):
    srv = server(getattr(mcp_server, transport))
    async with AsyncExitStack() as stack:
        clients = McpClients(stack, timeout=5, policy=LOOPBACK)
        assert {t.name for t in await clients.list_tools(srv)} == NAMES
        results = await asyncio.gather(
            clients.call_tool(srv, "get_boiling_point", {"liquid_name": "myawesomeliquid"}),
            clients.call_tool(srv, "greet_everyone", {"url": "u"}),
            clients.call_tool(srv, "explode", {"reason": "r"}),
        )
        outcomes = [call_outcome(r) for r in results]
    assert outcomes[:2] == [("-100", None), ("Hello, everyone at u!", None)]
    assert outcomes[2][1]["type"] == "mcp_tool_execution_error"
    seen = mcp_server.seen
    assert seen.list_tools == 1 and len(seen.calls) == 3
    if transport == "http_url":
        assert len(seen.sessions) == 1  # one session for all of it
        assert seen.requests[-1][0] == "DELETE"  # and it was closed
    else:
        gets = [r for r in seen.requests if r[0] == "GET"]
        assert len(gets) == 1


async def test_a_call_needs_no_listing(mcp_server):
    """A turn that reused a listing from history calls tools without listing them."""
    srv = server(mcp_server.http_url)
    async with AsyncExitStack() as stack:
        result = await McpClients(stack, timeout=5, policy=LOOPBACK).call_tool(
            srv, "get_boiling_point", {"liquid_name": "water"}
        )
    assert call_outcome(result) == ("100", None)
    assert mcp_server.seen.list_tools == 0


async def test_credentials(mcp_auth_server):
    good = server(mcp_auth_server.http_url, authorization=mcp_auth_server.token)
    bad = server(mcp_auth_server.sse_url, "bad", authorization="nope")
    async with AsyncExitStack() as stack:
        clients = McpClients(stack, timeout=5, policy=LOOPBACK)
        assert len(await clients.list_tools(good)) == 4
        with pytest.raises(McpFailure) as info:
            await clients.list_tools(bad)
    assert info.value.kind == "http_error" and info.value.code == 401
    assert "rejected the credentials" in info.value.message and "nope" not in info.value.message


async def test_unreachable_and_not_found(mcp_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncExitStack() as stack:
        clients = McpClients(stack, timeout=5, policy=LOOPBACK)
        with pytest.raises(McpFailure) as info:
            await clients.list_tools(server(f"http://127.0.0.1:{port}/mcp"))
        assert "unreachable" in info.value.message
        with pytest.raises(McpFailure) as info:
            await clients.list_tools(server(f"{mcp_server.base}/nothing-here", "missing"))
        assert info.value.code == 404
        # a failed server stays failed for the rest of the turn, without new attempts
        before = len(mcp_server.seen.requests)
        with pytest.raises(McpFailure):
            await clients.call_tool(server(f"{mcp_server.base}/nothing-here", "missing"), "x", {})
        assert len(mcp_server.seen.requests) == before


async def test_a_silent_server_is_bounded_by_the_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        started = time.monotonic()
        async with AsyncExitStack() as stack:
            clients = McpClients(stack, timeout=0.5, policy=LOOPBACK)
            with pytest.raises(McpFailure) as info:
                await clients.list_tools(
                    server(f"http://127.0.0.1:{listener.getsockname()[1]}/mcp")
                )
        assert time.monotonic() - started < 3  # closing included
        assert "did not answer" in info.value.message
    finally:
        listener.close()


async def test_the_connection_goes_through_the_url_guard(mcp_server):
    """Even past the request's check, the client's own connection is checked: with the
    default policy a loopback server is never contacted."""
    srv = server(mcp_server.http_url.replace("127.0.0.1", "localhost"))
    async with AsyncExitStack() as stack:
        clients = McpClients(stack, timeout=5, policy=UrlPolicy(McpGuardSettings()))
        with pytest.raises(McpFailure, match="refused by the MCP URL guard"):
            await clients.list_tools(srv)
    assert not mcp_server.seen.calls
