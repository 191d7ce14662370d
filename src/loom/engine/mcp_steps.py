"""The MCP phases of a turn, as output items and their events.

- listing: each server not yet listed in this turn's history gets an `mcp_list_tools`
  item (`in_progress` → `completed` | `failed`), and its tools join the model's offer;
- calls: each call becomes an `mcp_call` item (`in_progress`, argument delta and done,
  the call runs, `completed` | `failed`), or an `mcp_approval_request` item when the
  server's `require_approval` says a human must agree first.

Work starts for all servers (or all calls) at once and the items are emitted in order,
so parallel calls run in parallel while the stream keeps its one-item-at-a-time grammar.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from loom.engine.events import Event, EventSequencer
from loom.engine.ids import new_id
from loom.observability.metrics import MCP_CALLS, MCP_LATENCY, bounded
from loom.observability.tracing import NO_TRACE
from loom.tools.mcp_client import McpFailure, McpSessions
from loom.tools.mcp_tools import McpServer, call_outcome, listed_tool
from loom.tools.toolset import ToolSet

Item = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class McpCall:
    """A call to run (or to ask approval for)."""

    server: McpServer
    name: str
    arguments: str
    approval_request_id: str | None = None  # set when running an approved call


def reuse_listings(toolset: ToolSet, history: list[Item]) -> None:
    """Offer the tools an earlier turn listed for the same server_label (the latest listing
    that worked), instead of listing again, as OpenAI does."""
    latest: dict[str, list[dict[str, Any]]] = {}
    for item in history:
        if item.get("type") == "mcp_list_tools" and not item.get("error"):
            latest[item.get("server_label")] = item.get("tools") or []
    for label, server in toolset.mcp_servers.items():
        if label in latest:
            toolset.add_mcp_listing(server, latest[label])


async def _in_order(
    work: list[Awaitable[T]],
) -> AsyncIterator[tuple[int, asyncio.Future[T]]]:
    """Start all the work at once; hand back each piece in order as it finishes."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        for i, task in enumerate(tasks):
            await asyncio.wait([task])
            yield i, task
    finally:
        for task in tasks:
            task.cancel()


class McpSteps:
    def __init__(
        self,
        seq: EventSequencer,
        output: list[Item],
        toolset: ToolSet,
        clients: McpSessions,
        trace: Any = NO_TRACE,
    ):
        self._trace = trace
        self._seq = seq
        self._output = output
        self._toolset = toolset
        self._clients = clients

    def _add(self, item: Item) -> tuple[int, Event]:
        index = len(self._output)
        self._output.append(item)
        return index, self._seq.item_added(index, dict(item))

    # -- listing ---------------------------------------------------------------------------

    async def _listing(self, server: McpServer) -> list[dict[str, Any]] | McpFailure:
        try:
            return [listed_tool(t) for t in await self._clients.list_tools(server)]
        except McpFailure as failure:
            return failure

    async def list_tools(self) -> AsyncIterator[Event]:
        """List every server this turn has no listing for yet."""
        servers = self._toolset.unlisted_servers()
        async for i, done in _in_order([self._listing(s) for s in servers]):
            server = servers[i]
            item = {
                "id": new_id("mcpl"),
                "type": "mcp_list_tools",
                "server_label": server.label,
                "tools": [],
                "error": None,
            }
            index, added = self._add(item)
            yield added
            yield self._seq.emit(
                "response.mcp_list_tools.in_progress", item_id=item["id"], output_index=index
            )
            result = done.result()
            if isinstance(result, McpFailure):
                item["error"] = result.message
                state = "failed"
            else:
                item["tools"] = [tool for tool in result if server.allows(tool)]
                self._toolset.add_mcp_listing(server, item["tools"])
                state = "completed"
            yield self._seq.emit(
                f"response.mcp_list_tools.{state}", item_id=item["id"], output_index=index
            )
            yield self._seq.item_done(index, item)

    # -- calls -----------------------------------------------------------------------------

    async def _run(self, call: McpCall) -> tuple[str | None, dict[str, Any] | None]:
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError as exc:
            arguments = exc
        if not isinstance(arguments, dict):
            return None, {
                "type": "mcp_protocol_error",
                "code": -32602,
                "message": f"The arguments for '{call.name}' are not a JSON object.",
            }
        label = call.server.label
        attributes = {"loom.mcp.server_label": label, "loom.mcp.tool": call.name}
        started = time.perf_counter()
        outcome = "error"
        try:
            with self._trace.child("loom.mcp_call", attributes):
                result = await self._clients.call_tool(call.server, call.name, arguments)
            output, error = call_outcome(result)
            outcome = "ok" if error is None else "error"
            return output, error
        except McpFailure as failure:
            return None, failure.as_call_error()
        finally:
            metric_label = bounded("mcp_server_label", label)
            MCP_CALLS.labels(metric_label, outcome).inc()
            MCP_LATENCY.labels(metric_label).observe(time.perf_counter() - started)

    async def run_calls(self, calls: list[McpCall]) -> AsyncIterator[Event]:
        """Run the calls (all at once) and emit their `mcp_call` items in order."""
        async for i, done in _in_order([self._run(c) for c in calls]):
            call = calls[i]
            item: Item = {
                "id": new_id("mcp"),
                "type": "mcp_call",
                "server_label": call.server.label,
                "name": call.name,
                "arguments": call.arguments,
                "output": None,
                "error": None,
                "status": "in_progress",
            }
            if call.approval_request_id:
                item["approval_request_id"] = call.approval_request_id
            index, added = self._add(item)
            added["item"]["arguments"] = ""
            yield added
            item_id = item["id"]
            yield self._seq.emit(
                "response.mcp_call.in_progress", item_id=item_id, output_index=index
            )
            if call.arguments:
                yield self._seq.arguments_delta("mcp_call", item_id, index, call.arguments)
            yield self._seq.arguments_done("mcp_call", item_id, index, call.arguments)
            item["output"], item["error"] = done.result()
            item["status"] = "failed" if item["error"] is not None else "completed"
            yield self._seq.emit(
                f"response.mcp_call.{item['status']}", item_id=item_id, output_index=index
            )
            yield self._seq.item_done(index, item)

    def approval_requests(self, calls: list[McpCall]) -> list[Event]:
        """Ask the client to approve each call; the turn stops after these."""
        events = []
        for call in calls:
            item = {
                "id": new_id("mcpr"),
                "type": "mcp_approval_request",
                "server_label": call.server.label,
                "name": call.name,
                "arguments": call.arguments,
            }
            index, added = self._add(item)
            events += [added, self._seq.item_done(index, item)]
        return events
