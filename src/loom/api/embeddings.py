"""`/v1/embeddings`: forwarded to the model's provider with the provider's model name.

The bundled retrieval model (`local/all-minilm-l6-v2`) is answered in-process instead.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from openai.types import CreateEmbeddingResponse
from openai.types.embedding_create_params import EmbeddingCreateParams
from pydantic import BaseModel, ConfigDict

from loom.api.body import parse_body
from loom.api.deps import services
from loom.api.openapi_docs import answers, sdk_body
from loom.errors import InvalidRequestError
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
    rag = svc.rag
    if rag is not None and rag.embeddings.is_local(parsed.model):
        texts = [parsed.input] if isinstance(parsed.input, str) else parsed.input
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequestError(
                f"'{parsed.model}' takes a string or a list of strings.", param="input"
            )
        vectors = await rag.embeddings.embed(parsed.model, texts)
        return rag.embeddings.response(vectors, texts)
    resolved = await svc.models.resolve(parsed.model)
    return await resolved.provider.embed({**body, "model": resolved.model})
