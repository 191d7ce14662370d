"""`POST /v1/responses/input_tokens` and `POST /v1/responses/compact`: the context of a
create request, counted or compacted, without creating a response."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from loom.api.body import read_json_object, validation_error
from loom.api.deps import owner, services
from loom.engine.compaction import compact, expand
from loom.engine.context import build_messages, check_against_history, history_items
from loom.engine.ids import new_id
from loom.engine.input_items import normalize_input
from loom.engine.input_tokens import count_input_tokens
from loom.engine.request import CreateResponse
from loom.errors import InvalidRequestError
from loom.services import Services

router = APIRouter()


def _create_body(body: dict) -> CreateResponse:
    try:
        return CreateResponse.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


@router.post("/responses/input_tokens")
async def input_tokens(
    request: Request, svc: Services = Depends(services), who: str = Depends(owner)
):
    body = await read_json_object(request)
    body.setdefault("model", "")  # optional here: without it, Loom estimates
    req = _create_body(body)
    count = await count_input_tokens(
        req, settings=svc.settings, owner=who, models=svc.models, stores=svc.stores
    )
    return {"object": "response.input_tokens", "input_tokens": count}


@router.post("/responses/compact")
async def compact_response(
    request: Request, svc: Services = Depends(services), who: str = Depends(owner)
):
    body = await read_json_object(request)
    if not body.get("model"):
        raise InvalidRequestError(
            "Missing required parameter: 'model'.",
            param="model",
            code="missing_required_parameter",
        )
    req = _create_body(body)
    model = await svc.models.resolve(req.model)
    history = await history_items(
        svc.stores,
        who,
        previous_response_id=req.previous_response_id,
        conversation_id=req.conversation_id,
    )
    new_input = check_against_history(normalize_input(req.input), history, req.conversation_id)
    items = history + new_input
    if not items:
        raise InvalidRequestError("'input' is required.", param="input", code="missing_required")
    context = expand(svc.settings, who, items, len(history))
    messages = build_messages(req.instructions, context, [])
    output, usage = await compact(svc.settings, who, model, items, messages)
    return {
        "id": new_id("resp"),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": output,
        "usage": usage.as_response_usage(),
    }
