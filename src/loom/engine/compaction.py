"""Compaction: replace a long history by the user's own messages plus one sealed item.

`compact` asks the model for a summary of everything so far and returns the user messages
followed by a `compaction` item whose `encrypted_content` seals that summary, together with the work
done since the last user message (tool calls, their outputs), kept verbatim so that an
agent compacted mid-task still has its latest results exactly (see compaction_seal.py).
Passed back as input (or found in a response chain), the item stands for all the history
before it: `expand` keeps the user messages before it, replaces the item by the summary
and that recent work, and drops the rest, which the summary covers.

A create request compacts on its own when `context_management` holds
`{type: compaction, compact_threshold: N}` and the context's estimated size passes N tokens,
or when its input holds a `compaction_trigger` item. The compaction item is then the
response's first output item, and the model answers from the compacted context.
"""

from __future__ import annotations

from typing import Any

from loom.config import Settings
from loom.engine.compaction_seal import open_sealed, seal
from loom.engine.context import build_messages
from loom.engine.ids import new_id
from loom.engine.input_tokens import estimate_tokens
from loom.engine.usage import UsageTotals
from loom.errors import InvalidRequestError, UpstreamError
from loom.inference.registry import ResolvedModel

Item = dict[str, Any]

SUMMARY_PROMPT = (
    "Write a summary of the conversation so far that lets you continue it without the "
    "earlier messages: the user's goals and constraints, decisions made, tool calls made "
    "and what they returned, open questions, and the current state of the work. Reply "
    "with the summary only."
)
SUMMARY_PREFIX = "Summary of the earlier conversation (compacted):\n"
KEEP_RECENT = 16
_NOT_KEPT = {"compaction", "compaction_trigger"}
_CALLS = {"function_call", "custom_tool_call"}
_OUTPUTS = {"function_call_output", "custom_tool_call_output"}


def _is_user_message(item: Item) -> bool:
    return item.get("type") == "message" and item.get("role") == "user"


def _last_compaction(items: list[Item]) -> int | None:
    for index in range(len(items) - 1, -1, -1):
        if items[index].get("type") == "compaction":
            return index
    return None


def expand(settings: Settings, owner: str, items: list[Item], first_input: int) -> list[Item]:
    """The context `items` stand for once their last compaction item is opened. Items at
    `first_input` and after come from the request's input (named in a 400 if tampered)."""
    index = _last_compaction(items)
    if index is None:
        return items
    param = (
        f"input[{index - first_input}].encrypted_content"
        if index >= first_input
        else "previous_response_id"
    )
    state = open_sealed(settings, owner, items[index].get("encrypted_content"), param)
    summary = {
        "type": "message",
        "id": items[index].get("id") or new_id("msg"),
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": SUMMARY_PREFIX + state["summary"], "annotations": []}
        ],
    }
    kept = [item for item in items[:index] if _is_user_message(item)]
    return [*kept, summary, *state.get("recent", []), *items[index + 1 :]]


def _recent_work(items: list[Item]) -> list[Item]:
    """The work since the last user message (tool calls and their outputs, messages),
    kept verbatim next to the summary so an agent can go on mid-task. At most
    KEEP_RECENT items, and never an output whose call was left out."""
    last_user = max((i for i, item in enumerate(items) if _is_user_message(item)), default=-1)
    work = [i for i in items[last_user + 1 :] if i.get("type") not in _NOT_KEPT][-KEEP_RECENT:]
    calls = {i.get("call_id") for i in work if i.get("type") in _CALLS}
    return [i for i in work if i.get("type") not in _OUTPUTS or i.get("call_id") in calls]


async def summarize(
    model: ResolvedModel, messages: list[dict[str, Any]]
) -> tuple[str, UsageTotals]:
    body = {
        "model": model.model,
        "messages": [*messages, {"role": "user", "content": SUMMARY_PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    usage = UsageTotals()
    parts: list[str] = []
    chunks = model.provider.stream_chat(body)
    try:
        async for chunk in chunks:
            usage.add(chunk.get("usage"))
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    parts.append(content)
    finally:
        await chunks.aclose()
    summary = "".join(parts).strip()
    if not summary:
        raise UpstreamError("The model returned an empty summary; nothing was compacted.")
    return summary, usage


async def compact(
    settings: Settings,
    owner: str,
    model: ResolvedModel,
    items: list[Item],
    messages: list[dict[str, Any]],
) -> tuple[list[Item], UsageTotals]:
    """`items` (the raw context, compaction items unopened) and `messages` (what the model
    reads for them) → the user messages plus one new compaction item, and the usage."""
    summary, usage = await summarize(model, messages)
    users = [item for item in items if _is_user_message(item)]
    item = {
        "type": "compaction",
        "id": new_id("cmp"),
        "encrypted_content": seal(
            settings, owner, {"v": 1, "summary": summary, "recent": _recent_work(items)}
        ),
    }
    return [*users, item], usage


async def turn_context(
    settings: Settings,
    owner: str,
    model: ResolvedModel,
    instructions: str | None,
    history: list[Item],
    new_input: list[Item],
    tools: list[dict[str, Any]],
    context_management: Any,
) -> tuple[list[Item], list[Item], list[Item]]:
    """A turn's context items, with compaction applied: (the items the model is to see, the
    new input without `compaction_trigger` items, the items to put first in the output)."""
    threshold = compaction_threshold(context_management)
    trigger = any(item.get("type") == "compaction_trigger" for item in new_input)
    if trigger:
        new_input = [item for item in new_input if item.get("type") != "compaction_trigger"]
    items = history + new_input
    context = expand(settings, owner, items, len(history))
    if not trigger and threshold is None:  # the common case: no messages to build here
        return context, new_input, []
    messages = build_messages(instructions, context, [])
    if not trigger and estimate_tokens(messages, tools) <= threshold:
        return context, new_input, []
    compacted, _ = await compact(settings, owner, model, items, messages)
    return expand(settings, owner, compacted, len(compacted)), new_input, [compacted[-1]]


def compaction_threshold(context_management: Any) -> int | None:
    """`compact_threshold` of a create request's `context_management`, validated."""
    if context_management is None:
        return None
    if not isinstance(context_management, list):
        raise InvalidRequestError(
            "'context_management' must be a list.", param="context_management"
        )
    threshold = None
    for i, entry in enumerate(context_management):
        where = f"context_management[{i}]"
        if not isinstance(entry, dict) or entry.get("type") != "compaction":
            raise InvalidRequestError(
                f"'{where}.type' must be 'compaction'.", param=f"{where}.type"
            )
        value = entry.get("compact_threshold")
        if value is not None and (not isinstance(value, int | float) or value < 1):
            raise InvalidRequestError(
                f"'{where}.compact_threshold' must be a positive number.",
                param=f"{where}.compact_threshold",
            )
        threshold = int(value) if value is not None else threshold
    return threshold
