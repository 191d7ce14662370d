"""Validate the items a client adds to a conversation and bring them to their stored shape.

Items posted to `/v1/conversations` are Responses input items, so each goes through the
same `normalize_item` as a response's `input` (ids, content parts, `param` in errors). A
conversation also hands its items back as the SDK's `ConversationItem`, so each normalized
item is checked against the SDK type of its `type`: what a client stores here always reads
back as a valid item. Problems become 400s naming the field, like `items[3].role`.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from loom.engine.input_items import normalize_item
from loom.errors import InvalidRequestError, param_of

Item = dict[str, Any]

# OpenAI's limit on the items added by one request.
MAX_ITEMS_PER_REQUEST = 20


@cache
def _sdk_item_types() -> dict[str, type[BaseModel]]:
    """The SDK's ConversationItem union, keyed by each member's `type` tag. Imported on
    first use: the `openai` package costs about half a second of start-up otherwise."""
    from openai.types.conversations.conversation_item import ConversationItem

    union = typing.get_args(ConversationItem)[0]
    by_tag: dict[str, type[BaseModel]] = {}
    for member in typing.get_args(union):
        for tag in typing.get_args(member.model_fields["type"].annotation):
            by_tag[tag] = member
    return by_tag


def _check_against_sdk(item: Item, where: str) -> None:
    model = _sdk_item_types().get(item["type"])
    if model is None:
        raise InvalidRequestError(
            f"'{where}.type' {item['type']!r} cannot be stored in a conversation.",
            param=f"{where}.type",
            code="invalid_value",
        )
    try:
        model.model_validate(item)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = param_of(err["loc"], prefix=where)
        raise InvalidRequestError(
            f"Invalid value for '{param}': {err['msg']}", param=param, code="invalid_value"
        ) from None


def conversation_items(raw: Any, where: str = "items") -> list[Item]:
    """The posted items in their stored shape, each with an id unique in the request."""
    if not isinstance(raw, list):
        raise InvalidRequestError(f"'{where}' must be a list of items.", param=where)
    items: list[Item] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        item_where = f"{where}[{index}]"
        item = normalize_item(entry, item_where)
        if item.get("type") == "item_reference":
            raise InvalidRequestError(
                f"'{item_where}': an item_reference cannot be added to a conversation; "
                "add the item itself.",
                param=f"{item_where}.type",
                code="invalid_value",
            )
        _check_against_sdk(item, item_where)
        if item["id"] in seen:
            raise InvalidRequestError(
                f"'{item_where}.id' {item['id']!r} appears more than once in '{where}'.",
                param=f"{item_where}.id",
                code="invalid_value",
            )
        seen.add(item["id"])
        items.append(item)
    return items
