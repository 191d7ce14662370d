"""Fit a turn's context into the model's context window, as the `truncation` field asks.

With `truncation: "auto"` the oldest items are dropped until the context fits; a cut only
ever falls just before a message item, so a tool call is never separated from its output.
The newest message and everything after it are always kept: if even they do not fit, or
with `truncation: "disabled"` (the default), the request fails with OpenAI's 400
`context_length_exceeded`. The instructions are never dropped.

The window comes from the provider (configuration, the upstream's `/models`, or the
embedded model's `n_ctx`); a model whose window is unknown is not checked. Tokens are
counted by the embedded model's own tokenizer where it applies, else estimated (see
`estimate_tokens`): no tokenizer files are downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from loom.errors import InvalidRequestError

Item = dict[str, Any]
Message = dict[str, Any]
TokenCounter = Callable[[list[Message]], Awaitable[int]]

# Roughly what OpenAI's tokenizers give for English text and JSON: 4 bytes per token.
BYTES_PER_TOKEN = 4
# Each chat message costs a few tokens of framing (role, separators).
TOKENS_PER_MESSAGE = 4
# An image costs at least a low-detail tile.
TOKENS_PER_IMAGE = 85


def context_exceeded() -> InvalidRequestError:
    """OpenAI's error for an input that does not fit the model's context window."""
    return InvalidRequestError(
        "Your input exceeds the context window of this model. Please adjust your input and "
        "try again.",
        param="input",
        code="context_length_exceeded",
    )


def _bytes_tokens(data: bytes | str) -> int:
    size = len(data.encode() if isinstance(data, str) else data)
    return -(-size // BYTES_PER_TOKEN)


def estimate_tokens(messages: list[Message]) -> int:
    """A tokenizer-free estimate: 4 bytes of UTF-8 per token, 4 tokens of framing per
    message, 85 per image, tool calls counted as their JSON."""
    total = 3  # the reply's priming
    for message in messages:
        total += TOKENS_PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            total += _bytes_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    total += _bytes_tokens(part.get("text") or "")
                elif part.get("type") == "image_url":
                    total += TOKENS_PER_IMAGE
                else:
                    total += _bytes_tokens(orjson.dumps(part))
        if message.get("tool_calls"):
            total += _bytes_tokens(orjson.dumps(message["tool_calls"]))
    return total


def estimate_tools(tools: list[dict[str, Any]] | None) -> int:
    return _bytes_tokens(orjson.dumps(tools)) if tools else 0


async def fit_items(
    items: list[Item],
    *,
    to_messages: Callable[[list[Item]], list[Message]],
    count: TokenCounter,
    budget: int,
    auto: bool,
) -> list[Item]:
    """The newest items whose messages fit in `budget` tokens (all of them if they fit)."""

    async def fits(kept: list[Item]) -> bool:
        return await count(to_messages(kept)) <= budget

    if await fits(items):
        return items
    if not auto:
        raise context_exceeded()
    starts = [i for i in range(1, len(items)) if items[i].get("type") == "message"]
    # Fewer items never need more tokens, so the earliest cut that fits is found by
    # bisection: a handful of counts even for a long conversation.
    low, high, best = 0, len(starts) - 1, None
    while low <= high:
        middle = (low + high) // 2
        if await fits(items[starts[middle] :]):
            best, high = middle, middle - 1
        else:
            low = middle + 1
    if best is None:
        raise context_exceeded()
    return items[starts[best] :]
