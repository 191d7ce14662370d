"""`/v1/models`: what the configured providers serve, as `provider/model` ids."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from openai.types import Model

from loom.api.deps import services
from loom.api.openapi_docs import ListPage, answers
from loom.services import Services

router = APIRouter()


def _model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": model_id.split("/")[0]}


@router.get("/models", responses=answers(ListPage[Model], errors=(400,)))
async def list_models(svc: Services = Depends(services)):
    ids = await svc.models.list_model_ids()
    return {"object": "list", "data": [_model(i) for i in ids]}


@router.get("/models/{model_id:path}", responses=answers(Model))
async def get_model(model_id: str, svc: Services = Depends(services)):
    resolved = await svc.models.resolve(model_id)
    return _model(resolved.id)
