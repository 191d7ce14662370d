"""fit_items: the cut falls before a message, never between a tool call and its output."""

from __future__ import annotations

import pytest

from loom.engine.chat_messages import items_to_messages
from loom.engine.truncation import estimate_tokens, fit_items
from loom.errors import InvalidRequestError


def message(role: str, text: str) -> dict:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


ITEMS = [
    message("user", "a" * 400),
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "b" * 400},
    message("assistant", "done"),
    message("user", "newest"),
]


async def count(messages: list[dict]) -> int:
    return estimate_tokens(messages)


async def fit(budget: int, auto: bool = True) -> list[dict]:
    return await fit_items(
        ITEMS, to_messages=items_to_messages, count=count, budget=budget, auto=auto
    )


async def test_everything_kept_when_it_fits():
    assert await fit(10_000) == ITEMS


async def test_a_tool_call_and_its_output_go_together():
    # Room for everything after the first message, but a cut there would separate the call
    # the user's question: a cut falls only before a message, so the call and its output go too.
    budget = 150
    assert (
        await count(items_to_messages(ITEMS[1:])) <= budget < await count(items_to_messages(ITEMS))
    )
    assert await fit(budget) == ITEMS[3:]


async def test_the_earliest_cut_that_fits_is_taken():
    budget = await count(items_to_messages(ITEMS[3:])) + 1
    assert await fit(budget) == ITEMS[3:]
    assert await fit(await count(items_to_messages(ITEMS))) == ITEMS


@pytest.mark.parametrize("auto", [True, False])
async def test_too_small_for_the_newest_message(auto):
    with pytest.raises(InvalidRequestError) as caught:
        await fit(3, auto=auto)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "input"
