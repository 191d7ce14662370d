"""The MCP client side of one turn: one session per server, opened lazily, closed together.

Built on the official `mcp` SDK: its streamable HTTP transport, or the legacy SSE one when
the URL path ends in `/sse` or when streamable HTTP is refused in a way that says the
server does not speak it (HTTP 400/404/405, or a protocol error at `initialize`).

Each session runs in a task of its own. The SDK's transports hold anyio task groups and
cancel scopes for as long as the session is open; hosting them in a dedicated task keeps
them out of the turn's async generator, which yields between calls, and lets a dying
connection fail that task alone. Every operation is bounded by the turn's MCP timeout, so
a silent server can slow a turn down but never hang it.

Failures become `McpFailure`, whose message is safe to show a client: it names the server
and what went wrong, never a header.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Protocol

import httpx2
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from loom.config import McpGuardSettings
from loom.security.url_guard import UrlPolicy, guarded_transport
from loom.tools.mcp_tools import McpServer

log = logging.getLogger("loom.mcp")

_MAX_PAGES = 50  # tools/list pages followed before giving up on a runaway cursor
_CLOSE_GRACE = 5.0  # seconds a session gets to close before its task is cancelled
_SSE_READ_TIMEOUT = 300.0  # an idle event stream is normal; operations have their own bound


class McpFailure(Exception):
    """Talking to an MCP server failed. `message` is fit for the client to read."""

    def __init__(self, message: str, *, kind: str = "mcp_protocol_error", code: int = 0):
        super().__init__(message)
        self.message = message
        self.kind = kind  # "http_error" | "mcp_protocol_error", as in `mcp_call.error.type`
        self.code = code

    def as_call_error(self) -> dict[str, Any]:
        return {"type": self.kind, "code": self.code, "message": self.message}


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or the exception itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class _Attempt:
    """What one connection attempt saw: the first HTTP error status, if any. Its clients
    connect through the URL guard, so every address they reach is checked at connect time."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.status: int | None = None
        self._policy = policy

    async def on_response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400 and self.status is None:
            self.status = response.status_code

    def client(
        self, headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, **_: Any
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout,
            event_hooks={"response": [self.on_response]},
            transport=guarded_transport(self._policy),
        )


def describe(server: McpServer, exc: BaseException, status: int | None) -> McpFailure:
    """Turn whatever talking to a server raised into a failure a client can act on."""
    name = f"MCP server '{server.label}'"
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, McpFailure):
            return leaf
        if isinstance(leaf, httpx2.HTTPStatusError) and status is None:
            status = leaf.response.status_code
    if status in (401, 403):
        return McpFailure(
            f"{name} rejected the credentials (HTTP {status}); check 'authorization' and"
            " 'headers'.",
            kind="http_error",
            code=status,
        )
    if status is not None:
        return McpFailure(f"{name} answered HTTP {status}.", kind="http_error", code=status)
    for leaf in leaves:
        if isinstance(leaf, httpx2.TimeoutException | TimeoutError):
            return McpFailure(f"{name} did not answer in time.", kind="http_error", code=504)
        if isinstance(leaf, httpx2.TransportError):
            return McpFailure(
                f"{name} is unreachable ({leaf.__class__.__name__}: {leaf}).",
                kind="http_error",
                code=502,
            )
        if isinstance(leaf, MCPError):
            return McpFailure(f"{name} returned an error: {leaf.message}", code=leaf.code)
    log.debug("MCP server %s failed: %r", server.label, exc)
    return McpFailure(f"{name} failed ({exc.__class__.__name__}).")


def _falls_back(failure: McpFailure) -> bool:
    """Streamable HTTP refused in a way that says "not spoken here" rather than "go away"."""
    if failure.kind == "http_error":
        return failure.code in (400, 404, 405)
    return True  # a protocol error at initialize


class _Connection:
    """One server's session, hosted by its own task until `close()`."""

    def __init__(self, server: McpServer, timeout: float, policy: UrlPolicy):
        self.server = server
        self.timeout = timeout
        self.policy = policy
        self._ready: asyncio.Future[ClientSession] | None = None
        self._failure: McpFailure | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def session(self) -> ClientSession:
        """The open session; the first caller opens it, later ones wait for the same one."""
        if self._failure is not None:
            raise self._failure
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._host(self._ready))
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(self._ready)
        except McpFailure as failure:
            self._failure = failure
            raise
        except TimeoutError:
            self._failure = McpFailure(
                f"MCP server '{self.server.label}' did not answer within {self.timeout:g}s.",
                kind="http_error",
                code=504,
            )
            self._ready.cancel()
            raise self._failure from None

    async def _host(self, ready: asyncio.Future[ClientSession]) -> None:
        try:
            async with AsyncExitStack() as stack:
                session = await self._connect(stack)
                if ready.done():  # the turn gave up waiting
                    return
                ready.set_result(session)
                await self._closing.wait()
        except BaseException as exc:  # the host task ends here; the turn learns through `ready`
            if not ready.done():
                failure = describe(self.server, exc, None)
                ready.set_exception(failure)
            elif not isinstance(exc, asyncio.CancelledError):
                log.debug("MCP session %s ended: %r", self.server.label, exc)

    async def _connect(self, stack: AsyncExitStack) -> ClientSession:
        if self.server.uses_sse:
            return await self._open(stack, self._sse)
        try:
            async with AsyncExitStack() as attempt:
                session = await self._open(attempt, self._streamable)
                stack.push_async_exit(attempt.pop_all())
                return session
        except McpFailure as failure:
            if not _falls_back(failure):
                raise
            log.debug("MCP server %s: streamable HTTP refused; trying SSE", self.server.label)
        return await self._open(stack, self._sse)

    async def _open(
        self, stack: AsyncExitStack, transport: Callable[[AsyncExitStack, _Attempt], Any]
    ) -> ClientSession:
        seen = _Attempt(self.policy)
        try:
            async with AsyncExitStack() as attempt:
                read, write = await transport(attempt, seen)
                session = await attempt.enter_async_context(ClientSession(read, write))
                await session.initialize()
                stack.push_async_exit(attempt.pop_all())
                return session
        except McpFailure:
            raise
        except Exception as exc:
            raise describe(self.server, exc, seen.status) from None

    async def _streamable(self, stack: AsyncExitStack, seen: _Attempt):
        client = seen.client(
            headers=self.server.headers,
            timeout=httpx2.Timeout(self.timeout, read=_SSE_READ_TIMEOUT),
        )
        await stack.enter_async_context(client)
        return await stack.enter_async_context(
            streamable_http_client(self.server.url, http_client=client)
        )

    async def _sse(self, stack: AsyncExitStack, seen: _Attempt):
        return await stack.enter_async_context(
            sse_client(
                self.server.url,
                headers=self.server.headers,
                timeout=self.timeout,
                sse_read_timeout=_SSE_READ_TIMEOUT,
                httpx_client_factory=seen.client,
            )
        )

    async def close(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        self._closing.set()
        ready = self._ready
        if ready is not None and ready.done() and not ready.cancelled() and not ready.exception():
            # An open session ends its transport cleanly (streamable HTTP sends a DELETE).
            await asyncio.wait({task}, timeout=_CLOSE_GRACE)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


class McpSessions(Protocol):
    """What a turn needs of its MCP servers. `McpClients` is the real one; `loom.testing`
    has one in memory."""

    async def list_tools(self, server: McpServer) -> list[types.Tool]: ...

    async def call_tool(
        self, server: McpServer, name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult: ...


# Opens a turn's MCP sessions, closing them through the turn's exit stack; with the turn's
# MCP timeout. `McpClients` itself is one (with the default URL guard policy), and so is
# `partial(McpClients, policy=...)` with the app's.
ConnectMcp = Callable[[AsyncExitStack, float], McpSessions]


class McpClients:
    """The MCP sessions of one turn. Each server's session opens on first use and closes
    through the turn's exit stack. Every connection passes the URL guard `policy`; without
    one, the default policy (no loopback, private or metadata addresses)."""

    def __init__(
        self, stack: AsyncExitStack, timeout: float, policy: UrlPolicy | None = None
    ) -> None:
        self._stack = stack
        self._timeout = timeout
        self._policy = policy or UrlPolicy(McpGuardSettings())
        self._connections: dict[str, _Connection] = {}

    def _connection(self, server: McpServer) -> _Connection:
        connection = self._connections.get(server.label)
        if connection is None:
            connection = self._connections[server.label] = _Connection(
                server, self._timeout, self._policy
            )
            self._stack.push_async_callback(connection.close)
        return connection

    async def _request(self, server: McpServer, request: Any, result_type: type) -> Any:
        session = await self._connection(server).session()
        try:
            async with asyncio.timeout(self._timeout):
                return await session.send_request(
                    request, result_type, request_read_timeout_seconds=self._timeout
                )
        except McpFailure:
            raise
        except Exception as exc:
            raise describe(server, exc, None) from None

    async def list_tools(self, server: McpServer) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self._request(
                server, types.ListToolsRequest(params=params), types.ListToolsResult
            )
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call_tool(
        self, server: McpServer, name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        # A plain tools/call: `ClientSession.call_tool` would list the server's tools first
        # to check structured output, a listing the turn reused from history on purpose.
        request = types.CallToolRequest(
            params=types.CallToolRequestParams(name=name, arguments=arguments)
        )
        return await self._request(server, request, types.CallToolResult)
