"""`/v1/health`: liveness, plus whether the database answers.

A load balancer or orchestrator reads it: 200 with `"database": "ok"` when Loom can serve,
503 with `"database": "unreachable"` when its database does not answer a `SELECT 1` within
two seconds (every request that stores or reads state would fail).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from loom.api.deps import services
from loom.api.json import OrjsonResponse
from loom.api.openapi_docs import Health, answers
from loom.services import Services

router = APIRouter()


_UNAVAILABLE = {503: {"model": Health, "description": "The database does not answer"}}


@router.get("/health", responses={**answers(Health, errors=()), **_UNAVAILABLE})
async def health(svc: Services = Depends(services)):
    if await svc.stores.db.ping():
        return {"status": "OK", "database": "ok"}
    return OrjsonResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
