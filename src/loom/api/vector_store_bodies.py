"""Request bodies of `/v1/vector_stores` and its sub-resources, validated at the edge."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from loom.metadata import Metadata

Scalar = StrictBool | int | float | Annotated[str, Field(max_length=512)]


def _attribute_limits(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > 16:
        raise ValueError("at most 16 attributes")
    if any(len(k) > 64 for k in value):
        raise ValueError("attribute keys are at most 64 characters")
    return value


Attributes = Annotated[dict[str, Scalar], AfterValidator(_attribute_limits)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class StoreExpiry(BaseModel):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class CreateVectorStore(_Body):
    name: str | None = None
    file_ids: list[str] | None = Field(default=None, max_length=500)
    chunking_strategy: dict[str, Any] | None = None
    metadata: Metadata | None = None
    expires_after: StoreExpiry | None = None
    # Loom's extension: `provider/model` whose /v1/embeddings this store uses.
    embedding_model: str | None = None


class UpdateVectorStore(_Body):
    name: str | None = None
    metadata: Metadata | None = None
    expires_after: StoreExpiry | None = None


class AttachFile(_Body):
    file_id: str
    attributes: Attributes | None = None
    chunking_strategy: dict[str, Any] | None = None


class UpdateFileAttributes(_Body):
    attributes: Attributes | None


class BatchFile(_Body):
    file_id: str
    attributes: Attributes | None = None
    chunking_strategy: dict[str, Any] | None = None


class CreateFileBatch(_Body):
    file_ids: list[str] | None = Field(default=None, max_length=2000)
    files: list[BatchFile] | None = Field(default=None, max_length=2000)
    attributes: Attributes | None = None
    chunking_strategy: dict[str, Any] | None = None


class RankingOptions(_Body):
    ranker: str | None = None
    score_threshold: float | None = Field(default=None, ge=0, le=1)


class SearchVectorStore(_Body):
    query: str | list[str]
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False
