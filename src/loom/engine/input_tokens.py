"""Count the input tokens a create request would send to its model, without running it.

The context is built exactly as for a real turn: instructions, the history (previous
response chain or conversation), the new input, and the offered tools. A provider that
can tokenize (the embedded llama.cpp model: its own tokenizer and chat template, tool notes
included) gives the exact count. For any other backend Loom estimates, since a remote
OpenAI-compatible endpoint has no counting call in the chat-completions protocol:

    tokens ≈ ceil(characters / 4) over every message's text and the tools' JSON
             + 3 per message + 3 for the reply's priming + 85 per image

which is OpenAI's published rule of thumb for English text plus its per-message overhead.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from loom.config import Settings
from loom.engine.context import build_messages, check_against_history, history_items
from loom.engine.input_items import normalize_input
from loom.engine.request import CreateResponse
from loom.inference.registry import ModelRegistry
from loom.store import Stores
from loom.tools.toolset import build_toolset

Json = dict[str, Any]

PER_MESSAGE = 3
REPLY_PRIMING = 3
PER_IMAGE = 85


def estimate_tokens(messages: list[Json], tools: list[Json]) -> int:
    chars = 0
    images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    chars += len(part.get("text") or "")
                else:
                    images += 1
        for call in message.get("tool_calls") or ():
            function = call["function"]
            chars += len(function["name"]) + len(function.get("arguments") or "")
    if tools:
        chars += len(orjson.dumps(tools))
    return math.ceil(chars / 4) + PER_MESSAGE * len(messages) + REPLY_PRIMING + PER_IMAGE * images


async def count_input_tokens(
    req: CreateResponse, *, settings: Settings, owner: str, models: ModelRegistry, stores: Stores
) -> int:
    """The context as a turn would build it (compaction items opened) and counted."""
    from loom.engine.compaction import expand  # compaction estimates with this module

    resolved = await models.resolve(req.model) if req.model else None
    toolset = build_toolset(req.tools, req.tool_choice)
    history = await history_items(
        stores,
        owner,
        previous_response_id=req.previous_response_id,
        conversation_id=req.conversation_id,
    )
    new_input = check_against_history(normalize_input(req.input), history, req.conversation_id)
    new_input = [item for item in new_input if item.get("type") != "compaction_trigger"]
    context = expand(settings, owner, history + new_input, len(history))
    messages = build_messages(req.instructions, context, [])
    count = getattr(resolved.provider, "count_prompt_tokens", None) if resolved else None
    if count is not None:
        body: Json = {"model": resolved.model, "messages": messages}
        if toolset.chat_tools and toolset.chat_tool_choice != "none":
            body["tools"] = toolset.chat_tools
            if toolset.chat_tool_choice is not None:
                body["tool_choice"] = toolset.chat_tool_choice
        return await count(body)
    return estimate_tokens(messages, toolset.chat_tools)
