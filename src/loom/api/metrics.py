"""`GET /metrics`: every Loom metric in the Prometheus text format (see observability/)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from loom.observability.metrics import exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
