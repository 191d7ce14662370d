"""A real MCP server for tests, built with the `mcp` SDK and served on loopback.

One `McpTestServer` serves the same tools over both transports: streamable HTTP at
`/mcp`, the legacy SSE transport at `/sse` (its messages at `/messages/`), and the SSE
transport again at `/legacy`, a path whose name does not say SSE (for the fallback from
streamable HTTP). It records what it saw, so tests can assert on it: the `Authorization`
and `X-Tenant` headers and the method and path of every HTTP request, the MCP session
ids, and how many times tools were listed and called. With `token` set it answers 401 to
any request without `Authorization: Bearer <token>`.

This module is also a pytest plugin: `pytest_plugins = ["tests.support.mcp_server"]` in a
test module gives it the `mcp_server` and `mcp_auth_server` fixtures (one server each per
session; every test starts with a clean `seen`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.support.servers import ThreadedServer, serve

BOILING_POINT_DOC = """
        Returns the boiling point of a liquid in Celsius or Fahrenheit.

        :param liquid_name: The name of the liquid
        :param celsius: Whether to return the boiling point in Celsius
        :return: The boiling point of the liquid in Celcius or Fahrenheit
        """


class Address(BaseModel):
    street: str
    city: str
    tags: list[str] = Field(default_factory=list)


class Order(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


@dataclass
class Seen:
    """What the server observed; reset between tests."""

    authorization: list[str | None] = field(default_factory=list)
    tenant: list[str | None] = field(default_factory=list)  # the `X-Tenant` header
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    sessions: set[str] = field(default_factory=set)  # `Mcp-Session-Id`s clients sent
    list_tools: int = 0
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def reset(self) -> None:
        self.authorization.clear()
        self.tenant.clear()
        self.requests.clear()
        self.sessions.clear()
        self.list_tools = 0
        self.calls.clear()


def build_tools_server(seen: Seen) -> MCPServer:
    # MCPServer configures root logging when it is built; keep the test process's setup.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    server = MCPServer("loom-test-tools")
    root.handlers[:], root.level = handlers, level

    def record(name: str, arguments: dict[str, Any]) -> None:
        seen.calls.append((name, arguments))

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def greet_everyone(url: str) -> str:
        record("greet_everyone", {"url": url})
        return f"Hello, everyone at {url}!"

    @server.tool(description=BOILING_POINT_DOC)
    def get_boiling_point(liquid_name: str, celsius: bool = True) -> int:
        record("get_boiling_point", {"liquid_name": liquid_name, "celsius": celsius})
        if liquid_name == "myawesomeliquid":
            return -100 if celsius else -212
        return 100 if celsius else 212

    @server.tool()
    def explode(reason: str) -> str:
        """Always fails."""
        record("explode", {"reason": reason})
        raise ToolError(f"the tool exploded: {reason}")

    @server.tool()
    def place_order(address: Address, orders: list[Order], note: str | None = None) -> str:
        """Ship orders to an address."""
        record("place_order", {"address": address.model_dump(), "orders": len(orders)})
        return f"{sum(o.quantity for o in orders)} items to {address.city}"

    original = server.list_tools

    async def counting_list_tools():
        seen.list_tools += 1
        return await original()

    server.list_tools = counting_list_tools  # type: ignore[method-assign]
    return server


class _Gate:
    """ASGI middleware: records `Authorization`, and enforces the bearer token if set."""

    def __init__(self, app: ASGIApp, seen: Seen, token: str | None):
        self.app, self.seen, self.token = app, seen, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        auth, tenant = headers.get(b"authorization"), headers.get(b"x-tenant")
        self.seen.authorization.append(auth.decode() if auth is not None else None)
        self.seen.tenant.append(tenant.decode() if tenant is not None else None)
        self.seen.requests.append((scope["method"], scope["path"]))
        if b"mcp-session-id" in headers:
            self.seen.sessions.add(headers[b"mcp-session-id"].decode())
        if self.token is not None and auth != f"Bearer {self.token}".encode():
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"error": "unauthorized"}'})
            return
        await self.app(scope, receive, send)


class _Routes:
    """Dispatch by path to the streamable HTTP app or one of the SSE apps."""

    def __init__(self, streamable: Any, sse: Any, legacy: Any):
        self.streamable, self.sse, self.legacy = streamable, sse, legacy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.streamable(scope, receive, send)  # runs the session manager
            return
        path = scope.get("path", "")
        if path.startswith("/mcp"):
            await self.streamable(scope, receive, send)
        elif path.startswith("/legacy"):
            await self.legacy(scope, receive, send)
        else:
            await self.sse(scope, receive, send)


class McpTestServer:
    def __init__(self, token: str | None = None):
        self.seen = Seen()
        self.token = token
        tools = build_tools_server(self.seen)
        streamable = tools.streamable_http_app()
        sse = tools.sse_app()
        legacy = tools.sse_app(sse_path="/legacy", message_path="/legacy-messages/")
        routes = _Routes(streamable, sse, legacy)
        self.app = _Gate(routes, self.seen, token)
        self.server: ThreadedServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def http_url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def sse_url(self) -> str:
        return f"{self.base}/sse"

    @property
    def legacy_url(self) -> str:
        """The SSE transport at a path that does not end in /sse."""
        return f"{self.base}/legacy"


@contextlib.contextmanager
def run_mcp_server(token: str | None = None) -> Iterator[McpTestServer]:
    mcp_server = McpTestServer(token)
    with serve(mcp_server.app) as server:
        mcp_server.server = server
        yield mcp_server


TOKEN = "s3cret-mcp-token-4f1c9a"


@pytest.fixture(scope="session")
def _mcp_servers() -> Iterator[tuple[McpTestServer, McpTestServer]]:
    with run_mcp_server() as open_server, run_mcp_server(token=TOKEN) as auth_server:
        yield open_server, auth_server


@pytest.fixture
def mcp_server(_mcp_servers) -> McpTestServer:
    server = _mcp_servers[0]
    server.seen.reset()
    return server


@pytest.fixture
def mcp_auth_server(_mcp_servers) -> McpTestServer:
    """Answers 401 unless `Authorization: Bearer {TOKEN}`."""
    server = _mcp_servers[1]
    server.seen.reset()
    return server
