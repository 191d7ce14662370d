"""Build the model's context for a turn: instructions, history, then the new input.

History comes from exactly one place: the chain of earlier responses named by
`previous_response_id`, or the items of a conversation. Each is read with one store call.
"""

from __future__ import annotations

from typing import Any

from loom.engine.chat_messages import items_to_messages
from loom.errors import InvalidRequestError, NotFoundError
from loom.store import Stores

Item = dict[str, Any]


async def history_items(
    stores: Stores,
    owner: str,
    *,
    previous_response_id: str | None,
    conversation_id: str | None,
) -> list[Item]:
    if previous_response_id:
        chain = await stores.responses.chain(owner, previous_response_id)
        if chain is None:
            raise NotFoundError(
                f"Previous response with id '{previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        items: list[Item] = []
        for link in chain:
            items.extend(link["input_items"])
            items.extend(link["response"].get("output") or [])
        return items
    if conversation_id:
        items = await stores.conversations.all_items(owner, conversation_id)
        if items is None:
            raise NotFoundError(
                f"Conversation with id '{conversation_id}' not found.",
                param="conversation",
                code="conversation_not_found",
            )
        return items
    return []


def check_against_history(
    new_input: list[Item], history: list[Item], conversation_id: str | None
) -> list[Item]:
    """Resolve `item_reference`s against the history (the item is already in the context,
    so the reference is dropped), and on a conversation refuse an input item whose id the
    conversation already holds, which would otherwise fail only when the turn is saved."""
    known = {item.get("id") for item in history}
    out: list[Item] = []
    for i, item in enumerate(new_input):
        if item.get("type") == "item_reference":
            if item["id"] not in known:
                raise InvalidRequestError(
                    f"Item with id '{item['id']}' not found in the history of this response.",
                    param=f"input[{i}].id",
                    code="invalid_value",
                )
            continue
        if conversation_id and item.get("id") in known:
            raise InvalidRequestError(
                f"An item with id '{item['id']}' is already in conversation '{conversation_id}'.",
                param=f"input[{i}].id",
                code="invalid_value",
            )
        if conversation_id:
            known.add(item.get("id"))
        out.append(item)
    return out


def build_messages(
    instructions: str | None, history: list[Item], new_input: list[Item]
) -> list[dict[str, Any]]:
    messages = items_to_messages(history + new_input)
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    return messages
