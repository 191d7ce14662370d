"""`/v1/health`: liveness, plus whether the database answers."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from loom.api.deps import services
from loom.api.openapi_docs import Health, answers
from loom.services import Services

router = APIRouter()


@router.get("/health", responses=answers(Health, errors=()))
async def health(svc: Services = Depends(services)):
    return {"status": "OK"}
