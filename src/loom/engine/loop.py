"""The agent loop: an async generator of Responses stream events for one turn.

list MCP tools and run approved MCP calls → call the model → stream its text / reasoning
/ tool calls as items → run its MCP calls and file searches and call the model again, or
stop: on a final
answer, a client-side function call, an MCP call awaiting approval, a length limit, the
iteration limit, or a failure. After each model call the loop takes one explicit
`Decision`. Once it has yielded an event, its last event is exactly one of
`response.completed`, `response.incomplete` or `response.failed`, carrying the final
Response object; a failure after that point becomes `response.failed`.

Events made before the first model chunk arrives (the response's creation, MCP listings,
approved calls) are held back until it does, so an upstream that refuses the first call
raises instead, and the caller answers with an HTTP error rather than a failed stream.
Saving the turn and announcing its end is the turn runner's job (`turn_runner.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from loom.engine.approvals import ApprovedCall
from loom.engine.chat_messages import items_to_messages
from loom.engine.custom_calls import native_custom_messages
from loom.engine.events import Event, EventSequencer
from loom.engine.mcp_steps import McpCall, McpSteps
from loom.engine.model_call import ModelCallStream
from loom.engine.search_steps import SearchContext, SearchSteps
from loom.engine.usage import UsageTotals
from loom.errors import LoomError
from loom.inference.registry import ResolvedModel
from loom.observability.tracing import NO_TRACE
from loom.observability.turns import ModelCallTimer
from loom.tools.mcp_client import ConnectMcp, McpClients
from loom.tools.toolset import ToolSet

log = logging.getLogger("loom.engine")


class Decision(Enum):
    """What the loop does after a model call. All but CALL_MODEL_AGAIN end the turn."""

    CALL_MODEL_AGAIN = "call_model_again"  # MCP calls / searches ran; the model reads them
    FINAL_ANSWER = "final_answer"
    CLIENT_TOOL_CALLS = "client_tool_calls"  # the client runs them and continues the chain
    APPROVAL_REQUIRED = "approval_required"  # the client approves or denies, then continues
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"  # the upstream withheld (the rest of) its answer
    ITERATION_LIMIT = "iteration_limit"

    @property
    def status(self) -> str:
        if self in (Decision.LENGTH, Decision.CONTENT_FILTER, Decision.ITERATION_LIMIT):
            return "incomplete"
        return "completed"

    @property
    def incomplete_reason(self) -> str:
        if self is Decision.CONTENT_FILTER:
            return "content_filter"
        return "max_output_tokens" if self is Decision.LENGTH else "max_messages"


@dataclass
class Turn:
    """Everything one turn needs, built by `turn_setup.prepare_turn` (or by a test)."""

    response: dict[str, Any]  # the Response skeleton; its `output` grows as items arrive
    model: ResolvedModel
    messages: list[dict[str, Any]]  # the chat context: history plus the new input
    params: dict[str, Any]  # chat sampling and format options
    toolset: ToolSet
    max_tool_calls: int | None
    parallel_tool_calls: bool
    max_iterations: int = 10
    approved: list[ApprovedCall] = field(default_factory=list)  # MCP calls to run first
    mcp_timeout: float = 30.0
    search: SearchContext | None = None  # how file_search reaches retrieval
    # How the turn reaches its MCP servers; `prepare_turn` binds the app's URL guard policy.
    connect_mcp: ConnectMcp = McpClients
    trace: Any = NO_TRACE  # the turn's span (observability.tracing), parent of its calls
    prelude: list[dict[str, Any]] = field(default_factory=list)  # e.g. a compaction item
    logprobs: bool = False  # `include` asked for logprobs on output text


def _snapshot(response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "output": list(response["output"])}


def _tool_choice(turn: Turn, tools_allowed: bool, first_call: bool) -> Any:
    """`required` or a named tool forces the model to call a tool once; after the server
    ran the calls, the model is free to answer, or it would call tools forever."""
    choice = turn.toolset.chat_tool_choice
    if not tools_allowed:
        return "none"
    if not first_call and (choice == "required" or isinstance(choice, dict)):
        return "auto"
    return choice


def _chat_body(
    turn: Turn, output: list[dict[str, Any]], tools_allowed: bool, first_call: bool
) -> dict[str, Any]:
    messages = turn.messages + items_to_messages(output) if output else turn.messages
    messages = native_custom_messages(messages, turn.toolset)
    body: dict[str, Any] = {
        "model": turn.model.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        **turn.params,
    }
    toolset = turn.toolset
    if toolset.chat_tools and toolset.chat_tool_choice != "none":
        body["tools"] = toolset.chat_tools
        choice = _tool_choice(turn, tools_allowed, first_call)
        if choice is not None:
            body["tool_choice"] = choice
        if not turn.parallel_tool_calls:
            body["parallel_tool_calls"] = False
    return body


def _decide(call: ModelCallStream, asks: bool, last: bool) -> Decision:
    if call.finish_reason == "length":
        return Decision.LENGTH
    if call.finish_reason == "content_filter":
        return Decision.CONTENT_FILTER
    if asks:
        return Decision.APPROVAL_REQUIRED
    if call.calls:
        return Decision.CLIENT_TOOL_CALLS
    if call.mcp_calls or call.search_calls:
        return Decision.ITERATION_LIMIT if last else Decision.CALL_MODEL_AGAIN
    return Decision.FINAL_ANSWER


def _split(call: ModelCallStream) -> tuple[list[McpCall], list[McpCall]]:
    """The model's MCP calls: (to run now, to ask approval for)."""
    run, ask = [], []
    for draft in call.mcp_calls:
        mcp_call = McpCall(draft.server, draft.name, draft.arguments)
        (ask if draft.server.needs_approval(draft.tool) else run).append(mcp_call)
    return run, ask


async def _model_events(
    turn: Turn, call: ModelCallStream, body: dict[str, Any], usage: UsageTotals, held: list[Event]
) -> AsyncIterator[Event]:
    """Stream one model call as events. Events held back go out with its first chunk."""
    provider, model = turn.model.provider, turn.model.model
    timer = ModelCallTimer(provider.name, model)
    attributes = {"loom.provider": provider.name, "loom.model": model}
    ok = False
    with turn.trace.child("loom.model_call", attributes):
        chunks = provider.stream_chat(body)
        try:
            first = await anext(chunks, None)
            timer.first_token()
            for event in held:
                yield event
            held.clear()
            if first is not None:
                usage.add(first.get("usage"))
                if first.get("service_tier"):  # the tier the backend actually used
                    turn.response["service_tier"] = first["service_tier"]
                for event in call.feed(first):
                    yield event
                async for chunk in chunks:
                    if chunk.get("usage"):
                        usage.add(chunk["usage"])
                    for event in call.feed(chunk):
                        yield event
            ok = True
        finally:
            timer.done(ok)
            await chunks.aclose()
    for event in call.finish():
        yield event


# Failure codes kept as they are in `response.error.code`; any other becomes server_error.
_KEPT_FAILURE_CODES = frozenset({"upstream_timeout", "rate_limit_exceeded"})


def _failure(exc: Exception, response_id: str) -> dict[str, str]:
    """The `error` of a response that failed after its stream started."""
    if isinstance(exc, LoomError):
        code = exc.code if exc.code in _KEPT_FAILURE_CODES else "server_error"
        return {"code": code, "message": exc.message}
    log.exception("response %s failed", response_id)
    message = "The server had an error while processing the response."
    return {"code": "server_error", "message": message}


# After these decisions the model's MCP calls run (and approvals are asked for); a
# client's function call does not stop the server-side calls of the same model call.
_RUNS_MCP_CALLS = (
    Decision.CALL_MODEL_AGAIN,
    Decision.APPROVAL_REQUIRED,
    Decision.CLIENT_TOOL_CALLS,
)


async def run_turn(turn: Turn) -> AsyncIterator[Event]:
    """Yield the events of one response. Errors raised before the first event (the
    upstream refusing the first call) propagate, so the caller can answer with HTTP."""
    seq = EventSequencer()
    response = turn.response
    output: list[dict[str, Any]] = response["output"]
    usage = UsageTotals()
    calls_made = len(turn.approved)
    decision = Decision.ITERATION_LIMIT
    call: ModelCallStream | None = None
    failure: dict[str, str] | None = None
    stack = AsyncExitStack()  # the turn's MCP sessions, closed before the terminal event
    mcp = McpSteps(seq, output, turn.toolset, turn.connect_mcp(stack, turn.mcp_timeout), turn.trace)
    searches = SearchSteps(seq, output, turn.toolset, turn.search)
    held = [  # until the first model chunk arrives
        seq.response_event("response.created", _snapshot(response)),
        seq.response_event("response.in_progress", _snapshot(response)),
    ]
    for item in turn.prelude:  # items decided before the turn, output first
        held.append(seq.item_added(len(output), dict(item)))
        output.append(item)
        held.append(seq.item_done(len(output) - 1, item))
    try:
        try:
            async for event in mcp.list_tools():
                held.append(event)
            approved = [
                McpCall(a.server, a.request["name"], a.request["arguments"], a.request["id"])
                for a in turn.approved
            ]
            async for event in mcp.run_calls(approved):
                held.append(event)
            for iteration in range(turn.max_iterations):
                budget = None if turn.max_tool_calls is None else turn.max_tool_calls - calls_made
                call = ModelCallStream(
                    seq, output, turn.toolset, budget, turn.parallel_tool_calls, turn.logprobs
                )
                body = _chat_body(
                    turn,
                    output,
                    tools_allowed=budget is None or budget > 0,
                    first_call=iteration == 0,
                )
                async for event in _model_events(turn, call, body, usage, held):
                    yield event
                calls_made += len(call.calls) + len(call.mcp_calls) + len(call.search_calls)
                run, ask = _split(call)
                decision = _decide(call, bool(ask), last=iteration == turn.max_iterations - 1)
                if decision in _RUNS_MCP_CALLS:
                    async for event in mcp.run_calls(run):
                        yield event
                    async for event in searches.run(call.search_calls):
                        yield event
                    for event in mcp.approval_requests(ask):
                        yield event
                if decision is not Decision.CALL_MODEL_AGAIN:
                    break
        except Exception as exc:
            if held:  # nothing sent yet: the caller answers with an HTTP error
                raise
            failure = _failure(exc, response["id"])
    finally:
        await stack.aclose()

    if failure is not None:
        for event in call.abort() if call else ():
            yield event
        response.update(
            status="failed",
            error=failure,
            usage=usage.as_response_usage(),
        )
        yield seq.response_event("response.failed", response)
        return
    response["usage"] = usage.as_response_usage()
    response["status"] = decision.status
    if decision.status == "completed":
        response["completed_at"] = int(time.time())
        yield seq.response_event("response.completed", response)
    else:
        response["incomplete_details"] = {"reason": decision.incomplete_reason}
        yield seq.response_event("response.incomplete", response)
