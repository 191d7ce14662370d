"""Turn a validated create-request into a ready-to-run `Turn`: ids, tools, context."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from loom.config import Settings
from loom.engine.approvals import approved_calls
from loom.engine.compaction import turn_context
from loom.engine.context import check_against_history, history_items
from loom.engine.ids import new_id
from loom.engine.input_items import normalize_input
from loom.engine.loop import Turn
from loom.engine.mcp_steps import reuse_listings
from loom.engine.request import CreateResponse, chat_params, response_skeleton
from loom.errors import InvalidRequestError
from loom.inference.registry import ModelRegistry
from loom.security.limits import check_count
from loom.security.url_guard import UrlPolicy
from loom.store import Stores
from loom.tools.mcp_client import McpClients
from loom.tools.toolset import build_toolset


@dataclass
class PreparedTurn:
    turn: Turn
    input_items: list[dict[str, Any]]
    conversation_id: str | None
    history: list[dict[str, Any]]


async def prepare_turn(
    req: CreateResponse,
    *,
    owner: str,
    settings: Settings,
    models: ModelRegistry,
    stores: Stores,
    url_policy: UrlPolicy,
    history: list[dict[str, Any]] | None = None,
) -> PreparedTurn:
    """`history`, when given, is the turn's history already at hand (a WebSocket connection
    keeps its last responses in memory); otherwise it is read from the store."""
    check_count(req.input, settings.limits.max_input_items, "input")
    check_count(req.tools, settings.limits.max_tools, "tools")
    resolved = await models.resolve(req.model)
    input_items = normalize_input(req.input)
    conversation_id = req.conversation_id
    if not input_items and not req.previous_response_id and not conversation_id:
        raise InvalidRequestError("'input' is required.", param="input", code="missing_required")
    native_custom = getattr(resolved.provider, "native_custom_tools", False)
    toolset = build_toolset(req.tools, req.tool_choice, native_custom=native_custom)
    await _check_mcp_urls(req.tools, url_policy, settings.mcp_timeout)
    if history is None:
        history = await history_items(
            stores,
            owner,
            previous_response_id=req.previous_response_id,
            conversation_id=conversation_id,
        )
    input_items = check_against_history(input_items, history, conversation_id)
    messages, input_items, prelude = await turn_context(
        settings,
        owner,
        resolved,
        req.instructions,
        history,
        input_items,
        toolset.chat_tools,
        getattr(req, "context_management", None),
    )
    approved = approved_calls(history, input_items, toolset)
    reuse_listings(toolset, history + input_items)
    response = response_skeleton(
        req,
        response_id=new_id("resp"),
        created_at=int(time.time()),
        tools=toolset.echo,
        tool_choice=toolset.echo_tool_choice,
    )
    turn = Turn(
        response=response,
        model=resolved,
        messages=messages,
        prelude=prelude,
        params=chat_params(req),
        toolset=toolset,
        max_tool_calls=req.max_tool_calls,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        max_iterations=settings.max_tool_iterations,
        approved=approved,
        mcp_timeout=settings.mcp_timeout,
        connect_mcp=partial(McpClients, policy=url_policy),
    )
    return PreparedTurn(turn, input_items, conversation_id, history)


async def _check_mcp_urls(tools: list[Any] | None, policy: UrlPolicy, timeout: float) -> None:
    """Refuse, before anything runs, an MCP server the URL guard would not connect to."""
    for i, raw in enumerate(tools or []):
        if raw.get("type") == "mcp":
            await policy.check_url(raw["server_url"], f"tools[{i}].server_url", timeout)
