"""`/v1/conversations`: a durable history of items that responses can run in.

Create, retrieve, update (metadata) and delete a conversation; add, list, retrieve and
delete its items. Responses created with `conversation` append their turns through the
response store; these routes are the client's own view and edits of the same items.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
    ConversationItemList,
)
from openai.types.conversations.conversation_create_params import ConversationCreateParams
from openai.types.conversations.conversation_update_params import ConversationUpdateParams
from openai.types.conversations.item_create_params import ItemCreateParams
from pydantic import BaseModel, ConfigDict, Field

from loom.api.body import parse_body
from loom.api.deps import owner, services
from loom.api.includes import includes
from loom.api.openapi_docs import answers, sdk_body
from loom.api.pages import page_of
from loom.engine.conversation_items import MAX_ITEMS_PER_REQUEST, conversation_items
from loom.engine.ids import new_id
from loom.errors import ConflictError, NotFoundError
from loom.metadata import Metadata
from loom.services import Services
from loom.store import DuplicateIdError
from loom.tools.file_search import present_items

router = APIRouter()


class CreateConversation(BaseModel):
    model_config = ConfigDict(extra="allow")

    items: list[Any] | None = Field(default=None, max_length=MAX_ITEMS_PER_REQUEST)
    metadata: Metadata | None = None


class UpdateConversation(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: Metadata | None  # required, may be null (clears it)


class AddItems(BaseModel):
    model_config = ConfigDict(extra="allow")

    items: list[Any] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)


def _not_found(conversation_id: str) -> NotFoundError:
    return NotFoundError(
        f"Conversation with id '{conversation_id}' not found.", param="conversation_id"
    )


def _item_not_found(item_id: str, conversation_id: str) -> NotFoundError:
    return NotFoundError(
        f"Item with id '{item_id}' not found in conversation '{conversation_id}'.",
        param="item_id",
    )


def _duplicate(exc: DuplicateIdError) -> ConflictError:
    return ConflictError(f"An item with the same id already exists: {exc}", param="items")


async def _existing(svc: Services, who: str, conversation_id: str) -> dict[str, Any]:
    conversation = await svc.stores.conversations.get(who, conversation_id)
    if conversation is None:
        raise _not_found(conversation_id)
    return conversation


@router.post(
    "/conversations",
    openapi_extra=sdk_body(ConversationCreateParams),
    responses=answers(Conversation, errors=(400, 404, 409)),
)
async def create_conversation(
    request: Request, svc: Services = Depends(services), who: str = Depends(owner)
):
    body, _ = await parse_body(request, CreateConversation)
    items = conversation_items(body.items or [])
    conversation = {
        "id": new_id("conv"),
        "object": "conversation",
        "created_at": int(time.time()),
        "metadata": body.metadata or {},
    }
    try:
        await svc.stores.conversations.create(who, conversation, items)
    except DuplicateIdError as exc:
        raise _duplicate(exc) from None
    return conversation


@router.get("/conversations")
async def list_conversations(
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    """The caller's conversations, newest first by default (a Loom addition: OpenAI has
    no list; the console uses it)."""
    rows, has_more = await svc.stores.conversations.list(who, after=after, limit=limit, order=order)
    return page_of(rows, has_more)


@router.get("/conversations/{conversation_id}", responses=answers(Conversation))
async def get_conversation(
    conversation_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    return await _existing(svc, who, conversation_id)


@router.post(
    "/conversations/{conversation_id}",
    openapi_extra=sdk_body(ConversationUpdateParams),
    responses=answers(Conversation),
)
async def update_conversation(
    conversation_id: str,
    request: Request,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    body, _ = await parse_body(request, UpdateConversation)
    updated = await svc.stores.conversations.update_metadata(
        who, conversation_id, body.metadata or {}
    )
    if updated is None:
        raise _not_found(conversation_id)
    return updated


@router.delete("/conversations/{conversation_id}", responses=answers(ConversationDeletedResource))
async def delete_conversation(
    conversation_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    if not await svc.stores.conversations.delete(who, conversation_id):
        raise _not_found(conversation_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.post(
    "/conversations/{conversation_id}/items",
    openapi_extra=sdk_body(ItemCreateParams),
    responses=answers(ConversationItemList, errors=(400, 404, 409)),
)
async def add_items(
    conversation_id: str,
    request: Request,
    _include: list[str] = Depends(includes),
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    body, _ = await parse_body(request, AddItems)
    items = conversation_items(body.items)
    try:
        found = await svc.stores.conversations.append_items(who, conversation_id, items)
    except DuplicateIdError as exc:
        raise _duplicate(exc) from None
    if not found:
        raise _not_found(conversation_id)
    return page_of(items, False)


@router.get("/conversations/{conversation_id}/items", responses=answers(ConversationItemList))
async def list_items(
    conversation_id: str,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    include: list[str] = Depends(includes),
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    page = await svc.stores.conversations.list_items(
        who, conversation_id, after=after, limit=limit, order=order
    )
    if page is None:
        raise _not_found(conversation_id)
    items, has_more = page
    return page_of(present_items(items, include), has_more)


@router.get("/conversations/{conversation_id}/items/{item_id}", responses=answers(ConversationItem))
async def get_item(
    conversation_id: str,
    item_id: str,
    include: list[str] = Depends(includes),
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    item = await svc.stores.conversations.get_item(who, conversation_id, item_id)
    if item is None:
        await _existing(svc, who, conversation_id)
        raise _item_not_found(item_id, conversation_id)
    return present_items([item], include)[0]


@router.delete("/conversations/{conversation_id}/items/{item_id}", responses=answers(Conversation))
async def delete_item(
    conversation_id: str,
    item_id: str,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    deleted = await svc.stores.conversations.delete_item(who, conversation_id, item_id)
    conversation = await _existing(svc, who, conversation_id)
    if not deleted:
        raise _item_not_found(item_id, conversation_id)
    return conversation
