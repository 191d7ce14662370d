"""Turn a validated create-request into a ready-to-run `Turn`: ids, tools, context."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from loom.config import Settings
from loom.engine.approvals import approved_calls
from loom.engine.compaction import turn_context
from loom.engine.context import build_messages, check_against_history, history_items
from loom.engine.ids import new_id
from loom.engine.input_items import normalize_input, normalize_item
from loom.engine.loop import Turn
from loom.engine.mcp_steps import reuse_listings
from loom.engine.params import CHAT_TO_RESPONSES_PARAM
from loom.engine.prompt_templates import (
    RenderedPrompt,
    fill_input,
    prompt_version,
    render_prompt,
)
from loom.engine.request import (
    LOGPROBS_INCLUDE,
    CreateResponse,
    chat_params,
    response_skeleton,
)
from loom.engine.search_steps import SearchContext
from loom.engine.truncation import estimate_tokens, estimate_tools, fit_items
from loom.errors import InvalidRequestError, LoomError, NotFoundError
from loom.inference.registry import ModelRegistry, ResolvedModel
from loom.security.limits import check_count
from loom.security.url_guard import UrlPolicy
from loom.store import Stores
from loom.tools.file_search import INCLUDE_RESULTS, Searcher, known_files
from loom.tools.mcp_client import McpClients
from loom.tools.toolset import ToolSet, build_toolset

Item = dict[str, Any]


@dataclass
class PreparedTurn:
    turn: Turn
    input_items: list[dict[str, Any]]
    conversation_id: str | None
    history: list[dict[str, Any]]


async def _render_prompt(req: CreateResponse, owner: str, stores: Stores) -> RenderedPrompt | None:
    if req.prompt is None:
        return None
    version = prompt_version(req.prompt.version)
    template = await stores.prompts.get(owner, req.prompt.id, version)
    if template is None:
        what = f"Prompt with id '{req.prompt.id}'"
        if version is not None:
            what += f" and version {version}"
        raise NotFoundError(f"{what} not found.", param="prompt.id", code="prompt_not_found")
    return render_prompt(template, req.prompt.variables, req.instructions)


def _check_params(resolved: ResolvedModel, params: dict[str, Any]) -> None:
    """Let the provider refuse a field it cannot honor now, named as the client sent it."""
    check = getattr(resolved.provider, "check_request", None)
    if check is None:
        return
    try:
        check({"model": resolved.model, **params})
    except InvalidRequestError as exc:
        exc.param = CHAT_TO_RESPONSES_PARAM.get(exc.param or "", exc.param)
        raise


async def _fit_context(
    req: CreateResponse,
    resolved: ResolvedModel,
    toolset: ToolSet,
    instructions: str | None,
    items: list[Item],
) -> list[Item]:
    """The items to send: all of them, or with `truncation: auto` the newest that fit."""
    window_of = getattr(resolved.provider, "context_window", None)
    window = await window_of(resolved.model) if window_of else None
    if window is None:
        return items
    count_tokens = getattr(resolved.provider, "count_tokens", None)
    if count_tokens is not None:

        async def count(messages: list[dict[str, Any]]) -> int:
            return await count_tokens({"model": resolved.model, "messages": messages})
    else:
        tools = estimate_tools(toolset.chat_tools)

        async def count(messages: list[dict[str, Any]]) -> int:
            return estimate_tokens(messages) + tools

    return await fit_items(
        items,
        to_messages=lambda kept: build_messages(instructions, kept, []),
        count=count,
        budget=window - (req.max_output_tokens or 0),
        auto=req.truncation == "auto",
    )


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
    history: list[dict[str, Any]] | None = None,
    response_id: str | None = None,
    created_at: int | None = None,
) -> PreparedTurn:
    """`history`, when given, is the turn's history already at hand (a WebSocket connection
    keeps its last responses in memory); otherwise it is read from the store.
    `response_id` and `created_at` are given when a queued background response is run
    again from its stored request."""
    check_count(req.input, settings.limits.max_input_items, "input")
    check_count(req.tools, settings.limits.max_tools, "tools")
    resolved = await models.resolve(req.model)
    input_items = normalize_input(req.input)
    rendered = await _render_prompt(req, owner, stores)
    instructions = req.instructions
    if rendered is not None:
        instructions = rendered.instructions
        lead = [normalize_item(item, "prompt") for item in rendered.lead_items]
        input_items = lead + fill_input(input_items, req.prompt.variables)
    conversation_id = req.conversation_id
    if not input_items and not req.previous_response_id and not conversation_id:
        raise InvalidRequestError("'input' is required.", param="input", code="missing_required")
    params = chat_params(req)
    _check_params(resolved, params)
    native_custom = getattr(resolved.provider, "native_custom_tools", False)
    toolset = build_toolset(req.tools, req.tool_choice, native_custom=native_custom)
    await _check_mcp_urls(req.tools, url_policy, settings.mcp_timeout)
    search = await _search_context(toolset, req, owner, searcher)
    if history is None:
        history = await history_items(
            stores,
            owner,
            previous_response_id=req.previous_response_id,
            conversation_id=conversation_id,
        )
    input_items = check_against_history(input_items, history, conversation_id)
    context, input_items, prelude = await turn_context(
        settings,
        owner,
        resolved,
        instructions,
        history,
        input_items,
        toolset.chat_tools,
        getattr(req, "context_management", None),
    )
    approved = approved_calls(history, input_items, toolset)
    reuse_listings(toolset, history + input_items)
    toolset.citable_files.update(known_files(history + input_items))
    context = await _fit_context(req, resolved, toolset, instructions, context)
    response = response_skeleton(
        req,
        response_id=response_id or new_id("resp"),
        created_at=created_at or int(time.time()),
        tools=toolset.echo,
        tool_choice=toolset.echo_tool_choice,
    )
    response["instructions"] = instructions
    response["prompt"] = rendered.echo if rendered else None
    turn = Turn(
        response=response,
        model=resolved,
        messages=build_messages(instructions, context, []),
        prelude=prelude,
        params=params,
        toolset=toolset,
        max_tool_calls=req.max_tool_calls,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        max_iterations=settings.max_tool_iterations,
        approved=approved,
        mcp_timeout=settings.mcp_timeout,
        search=_with_fallback(search, history + input_items),
        connect_mcp=partial(McpClients, policy=url_policy),
        logprobs=LOGPROBS_INCLUDE in (req.include or ()),
    )
    return PreparedTurn(turn, input_items, conversation_id, history)


async def _check_mcp_urls(tools: list[Any] | None, policy: UrlPolicy, timeout: float) -> None:
    """Refuse, before anything runs, an MCP server the URL guard would not connect to."""
    for i, raw in enumerate(tools or []):
        if raw.get("type") == "mcp":
            await policy.check_url(raw["server_url"], f"tools[{i}].server_url", timeout)
