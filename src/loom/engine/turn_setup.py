"""Turn a validated create-request into a ready-to-run `Turn`: ids, tools, context."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from loom.config import Settings
from loom.engine.approvals import approved_calls
from loom.engine.context import build_messages, check_against_history, history_items
from loom.engine.ids import new_id
from loom.engine.input_items import normalize_input
from loom.engine.loop import Turn
from loom.engine.mcp_steps import reuse_listings
from loom.engine.request import CreateResponse, chat_params, response_skeleton
from loom.engine.search_steps import SearchContext
from loom.errors import InvalidRequestError, LoomError
from loom.inference.registry import ModelRegistry
from loom.security.limits import check_count
from loom.security.url_guard import UrlPolicy
from loom.store import Stores
from loom.tools.file_search import INCLUDE_RESULTS, Searcher, known_files
from loom.tools.mcp_client import McpClients
from loom.tools.toolset import ToolSet, build_toolset


@dataclass
class PreparedTurn:
    turn: Turn
    input_items: list[dict[str, Any]]
    conversation_id: str | None


def _last_user_text(items: list[dict[str, Any]]) -> str | None:
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            text = " ".join(
                p.get("text") or "" for p in item.get("content") or () if isinstance(p, dict)
            ).strip()
            if text:
                return text
    return None


async def _search_context(
    toolset: ToolSet, req: CreateResponse, owner: str, searcher: Searcher | None
) -> SearchContext | None:
    """Check the file_search tool's vector stores up front, so an unknown id is a 404
    naming the field before anything runs, and nothing is stored."""
    config = toolset.file_search
    if config is None:
        return None
    if searcher is None:
        raise InvalidRequestError(
            "file_search is not available on this server.", param=f"{config.where}.type"
        )
    try:
        await searcher.require_vector_stores(owner, list(config.vector_store_ids))
    except LoomError as exc:
        exc.param = f"{config.where}.vector_store_ids"
        raise
    return SearchContext(owner, searcher, INCLUDE_RESULTS in (req.include or ()))


def _with_fallback(search: SearchContext | None, items: list[dict[str, Any]]) -> Any:
    if search is None:
        return None
    return replace(search, fallback_query=_last_user_text(items))


async def prepare_turn(
    req: CreateResponse,
    *,
    owner: str,
    settings: Settings,
    models: ModelRegistry,
    stores: Stores,
    url_policy: UrlPolicy,
    searcher: Searcher | None = None,
) -> PreparedTurn:
    check_count(req.input, settings.limits.max_input_items, "input")
    check_count(req.tools, settings.limits.max_tools, "tools")
    resolved = await models.resolve(req.model)
    input_items = normalize_input(req.input)
    conversation_id = req.conversation_id
    if not input_items and not req.previous_response_id and not conversation_id:
        raise InvalidRequestError("'input' is required.", param="input", code="missing_required")
    toolset = build_toolset(req.tools, req.tool_choice)
    await _check_mcp_urls(req.tools, url_policy, settings.mcp_timeout)
    search = await _search_context(toolset, req, owner, searcher)
    history = await history_items(
        stores,
        owner,
        previous_response_id=req.previous_response_id,
        conversation_id=conversation_id,
    )
    input_items = check_against_history(input_items, history, conversation_id)
    approved = approved_calls(history, input_items, toolset)
    reuse_listings(toolset, history + input_items)
    toolset.citable_files.update(known_files(history + input_items))
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
        messages=build_messages(req.instructions, history, input_items),
        params=chat_params(req),
        toolset=toolset,
        max_tool_calls=req.max_tool_calls,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        max_iterations=settings.max_tool_iterations,
        approved=approved,
        mcp_timeout=settings.mcp_timeout,
        search=_with_fallback(search, history + input_items),
        connect_mcp=partial(McpClients, policy=url_policy),
    )
    return PreparedTurn(turn, input_items, conversation_id)


async def _check_mcp_urls(tools: list[Any] | None, policy: UrlPolicy, timeout: float) -> None:
    """Refuse, before anything runs, an MCP server the URL guard would not connect to."""
    for i, raw in enumerate(tools or []):
        if raw.get("type") == "mcp":
            await policy.check_url(raw["server_url"], f"tools[{i}].server_url", timeout)
