"""The agent loop: an async generator of Responses stream events for one turn.

call the model → stream its text / reasoning / tool calls as items → run server-side
tools and call the model again, or stop: on a final answer, a client-side function call,
a length limit, or a failure. Each stop is an explicit `Outcome`. The last event is always
exactly one of `response.completed`, `response.incomplete` or `response.failed`, and it
carries the final Response object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from loom.engine.events import Event, EventSequencer
from loom.engine.model_call import ModelCallStream
from loom.engine.usage import UsageTotals
from loom.errors import LoomError
from loom.inference.registry import ResolvedModel
from loom.tools.toolset import ToolSet

log = logging.getLogger("loom.engine")


class Outcome(Enum):
    """Why a turn stopped; each maps to the Response's final status."""

    FINAL_ANSWER = "final_answer"
    CLIENT_TOOL_CALLS = "client_tool_calls"  # the client runs them and continues the chain
    LENGTH = "length"
    ITERATION_LIMIT = "iteration_limit"

    @property
    def status(self) -> str:
        return "incomplete" if self in (Outcome.LENGTH, Outcome.ITERATION_LIMIT) else "completed"


@dataclass
class Turn:
    """Everything one turn needs, built by the API layer."""

    response: dict[str, Any]  # the Response skeleton; its `output` grows as items arrive
    model: ResolvedModel
    messages: list[dict[str, Any]]  # the chat context: history plus the new input
    params: dict[str, Any]  # chat sampling and format options
    toolset: ToolSet
    max_tool_calls: int | None
    parallel_tool_calls: bool
    max_iterations: int = 10


def _snapshot(response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "output": list(response["output"])}


def _chat_body(turn: Turn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": turn.model.model,
        "messages": turn.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        **turn.params,
    }
    if turn.toolset.chat_tools and turn.toolset.chat_tool_choice != "none":
        body["tools"] = turn.toolset.chat_tools
        if turn.toolset.chat_tool_choice is not None:
            body["tool_choice"] = turn.toolset.chat_tool_choice
        if not turn.parallel_tool_calls:
            body["parallel_tool_calls"] = False
    return body


async def run_turn(turn: Turn) -> AsyncIterator[Event]:
    """Yield the events of one response. Errors raised before the first event (the
    upstream refusing the first call) propagate, so the caller can answer with HTTP."""
    seq = EventSequencer()
    response = turn.response
    output: list[dict[str, Any]] = response["output"]
    usage = UsageTotals()
    calls_made = 0
    started = False
    outcome = Outcome.ITERATION_LIMIT
    call: ModelCallStream | None = None
    try:
        for _ in range(turn.max_iterations):
            budget = None if turn.max_tool_calls is None else turn.max_tool_calls - calls_made
            call = ModelCallStream(seq, output, turn.toolset, budget, turn.parallel_tool_calls)
            chunks = turn.model.provider.stream_chat(_chat_body(turn))
            try:
                first = await anext(chunks, None)
                if not started:
                    started = True
                    yield seq.response_event("response.created", _snapshot(response))
                    yield seq.response_event("response.in_progress", _snapshot(response))
                if first is not None:
                    usage.add(first.get("usage"))
                    for event in call.feed(first):
                        yield event
                    async for chunk in chunks:
                        if chunk.get("usage"):
                            usage.add(chunk["usage"])
                        for event in call.feed(chunk):
                            yield event
            finally:
                await chunks.aclose()
            for event in call.finish():
                yield event
            calls_made += len(call.calls)
            if call.finish_reason == "length":
                outcome = Outcome.LENGTH
            elif call.calls:
                outcome = Outcome.CLIENT_TOOL_CALLS
            else:
                outcome = Outcome.FINAL_ANSWER
            break
    except Exception as exc:
        if not started:
            raise
        if isinstance(exc, LoomError):
            message = exc.message
        else:
            log.exception("response %s failed", response["id"])
            message = "The server had an error while processing the response."
        for event in call.abort() if call else ():
            yield event
        response.update(
            status="failed",
            error={"code": "server_error", "message": message},
            usage=usage.as_response_usage(),
        )
        yield seq.response_event("response.failed", response)
        return

    response["usage"] = usage.as_response_usage()
    response["status"] = outcome.status
    if outcome.status == "completed":
        response["completed_at"] = int(time.time())
        yield seq.response_event("response.completed", response)
    else:
        reason = "max_output_tokens" if outcome is Outcome.LENGTH else "max_tool_calls"
        response["incomplete_details"] = {"reason": reason}
        yield seq.response_event("response.incomplete", response)
