"""`/v1/embeddings`: forwarded to the model's provider with the provider's model name."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from openai.types import CreateEmbeddingResponse
from openai.types.embedding_create_params import EmbeddingCreateParams
from pydantic import BaseModel, ConfigDict

from loom.api.body import parse_body
from loom.api.deps import services
from loom.api.openapi_docs import answers, sdk_body
from loom.services import Services

router = APIRouter()


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str | None = None
    dimensions: int | None = None


@router.post(
    "/embeddings",
    openapi_extra=sdk_body(EmbeddingCreateParams),
    responses=answers(CreateEmbeddingResponse, upstream=True),
)
async def create_embeddings(request: Request, svc: Services = Depends(services)):
    parsed, body = await parse_body(request, EmbeddingRequest)
    resolved = await svc.models.resolve(parsed.model)
    return await resolved.provider.embed({**body, "model": resolved.model})
