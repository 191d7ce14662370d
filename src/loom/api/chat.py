"""`/v1/chat/completions`: pass-through to the model's provider, plus stored completions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from openai.types.chat import ChatCompletion, ChatCompletionDeleted, ChatCompletionStoreMessage
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from pydantic import BaseModel, ConfigDict, Field, field_validator

from loom.api.body import parse_body
from loom.api.deps import owner, services
from loom.api.json import OrjsonResponse
from loom.api.openapi_docs import STREAM_PROPERTY, ListPage, answers, sdk_body
from loom.api.pages import page_of
from loom.api.sse import DONE_LINE, chat_chunk_bytes, sse_response
from loom.errors import NotFoundError
from loom.inference.assemble import ChunkAccumulator
from loom.metadata import Metadata
from loom.observability.metrics import observe_usage
from loom.observability.turns import ModelCallTimer
from loom.security.limits import check_count
from loom.services import Services
from loom.store import ChatCompletionStore, DuplicateIdError

log = logging.getLogger("loom.api")

router = APIRouter()

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = None
    store: bool | None = None
    metadata: Metadata | None = None

    @field_validator("messages")
    @classmethod
    def _roles(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for message in messages:
            if message.get("role") not in _ROLES:
                raise ValueError(f"each message needs a 'role', one of {sorted(_ROLES)}")
        return messages


# Fields Loom handles itself and does not forward upstream.
_LOCAL_FIELDS = ("store", "metadata")


@router.post(
    "/chat/completions",
    openapi_extra=sdk_body(CompletionCreateParamsBase, stream=STREAM_PROPERTY),
    responses=answers(ChatCompletion, upstream=True, stream=True),
)
async def create_chat_completion(
    request: Request, svc: Services = Depends(services), who: str = Depends(owner)
):
    parsed, body = await parse_body(request, ChatCompletionRequest)
    limits = svc.settings.limits
    check_count(parsed.messages, limits.max_input_items, "messages")
    check_count(body.get("tools"), limits.max_tools, "tools")
    resolved = await svc.models.resolve(parsed.model)
    upstream_body = {k: v for k, v in body.items() if k not in _LOCAL_FIELDS}
    upstream_body["model"] = resolved.model
    store = parsed.store is not False
    store_completions = svc.stores.chat_completions

    timer = ModelCallTimer(resolved.provider.name, resolved.model)
    if not parsed.stream:
        try:
            completion = await resolved.provider.chat(upstream_body)
        except BaseException:
            timer.done(ok=False)
            raise
        timer.done(ok=True)
        observe_usage(parsed.model, completion.get("usage"))
        if store and completion.get("id"):
            await _keep(store_completions, who, completion, parsed)
        return OrjsonResponse(completion)

    chunks = resolved.provider.stream_chat(upstream_body)
    # Pull the first chunk before answering, so an upstream that fails up front
    # becomes a proper HTTP error instead of a broken stream.
    try:
        first = await anext(chunks, None)
    except BaseException:
        timer.done(ok=False)
        raise
    timer.first_token()

    async def body_bytes() -> AsyncIterator[bytes]:
        accumulator = ChunkAccumulator() if store else None
        last = first
        ok = False
        try:
            if first is not None:
                if accumulator:
                    accumulator.add(first)
                yield chat_chunk_bytes(first)
                async for last in chunks:
                    if accumulator:
                        accumulator.add(last)
                    yield chat_chunk_bytes(last)
            ok = True
            observe_usage(parsed.model, last.get("usage") if last else None)
        except Exception as exc:  # the status line is gone; report in-band, as OpenAI does
            message = getattr(exc, "message", None) or f"stream failed: {type(exc).__name__}"
            code = getattr(exc, "code", None)
            error = {"message": message, "type": "upstream_error", "param": None, "code": code}
            yield chat_chunk_bytes({"error": error})
            accumulator = None
        finally:
            timer.done(ok)
            await chunks.aclose()
        if accumulator and accumulator.id:
            # Stored before [DONE], so a client that reacts to the end finds it.
            await _keep(store_completions, who, accumulator.completion(), parsed)
        yield DONE_LINE

    return sse_response(body_bytes())


async def _keep(
    completions: ChatCompletionStore, who: str, completion: dict, parsed: ChatCompletionRequest
) -> None:
    """Store a completion. An id seen before (a replayed recording, an upstream that reuses
    ids) keeps the first one: the answer was delivered either way."""
    try:
        await completions.put(who, completion, parsed.messages, parsed.metadata)
    except DuplicateIdError:
        log.warning("chat completion %s already stored; not stored again", completion["id"])


@router.get("/chat/completions", responses=answers(ListPage[ChatCompletion], errors=(400,)))
async def list_chat_completions(
    request: Request,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "asc",
    model: str | None = None,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    # The SDK sends the `metadata` filter as `metadata[key]=value` query parameters.
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    rows, has_more = await svc.stores.chat_completions.list(
        who, after=after, limit=limit, order=order, model=model, metadata=metadata or None
    )
    return page_of(rows, has_more)


@router.get("/chat/completions/{completion_id}", responses=answers(ChatCompletion))
async def get_chat_completion(
    completion_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    stored = await svc.stores.chat_completions.get(who, completion_id)
    if stored is None:
        raise _not_found(completion_id)
    return {**stored["completion"], "metadata": stored["metadata"] or {}}


@router.get(
    "/chat/completions/{completion_id}/messages",
    responses=answers(ListPage[ChatCompletionStoreMessage]),
)
async def list_chat_completion_messages(
    completion_id: str,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "asc",
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    page = await svc.stores.chat_completions.messages(
        who, completion_id, after=after, limit=limit, order=order
    )
    if page is None:
        raise _not_found(completion_id)
    return page_of(*page)


@router.delete("/chat/completions/{completion_id}", responses=answers(ChatCompletionDeleted))
async def delete_chat_completion(
    completion_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    if not await svc.stores.chat_completions.delete(who, completion_id):
        raise _not_found(completion_id)
    return {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}


def _not_found(completion_id: str) -> NotFoundError:
    return NotFoundError(f"No chat completion found with id '{completion_id}'.", param="id")
