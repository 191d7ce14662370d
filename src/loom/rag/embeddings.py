"""Embedding texts with a vector store's model: the bundled one, or any provider's.

A vector store names its model once, at creation (`embedding_model`, a Loom extension):
`local/all-minilm-l6-v2` (the default, run in-process) or `provider/model`, sent to that
provider's `/v1/embeddings` through the model registry (and so through record/replay).
Every vector leaves here as a unit-length float32 row, so a dot product is the cosine.
"""

from __future__ import annotations

import numpy as np

from loom.errors import InvalidRequestError, NotFoundError, UpstreamError
from loom.inference.registry import ModelRegistry
from loom.rag.local_embedder import LocalEmbedder

LOCAL_PREFIX = "local/"
_REMOTE_BATCH = 256


class Embeddings:
    def __init__(self, registry: ModelRegistry, local: LocalEmbedder) -> None:
        self.registry = registry
        self.local = local
        self.default_model = LOCAL_PREFIX + local.name

    def is_local(self, model_id: str) -> bool:
        return model_id == self.default_model

    async def check_model(self, model_id: str, param: str = "embedding_model") -> None:
        """Raise a 4xx naming `param` if `model_id` cannot embed for a vector store."""
        if self.is_local(model_id):
            return
        if model_id.startswith(LOCAL_PREFIX):
            raise InvalidRequestError(
                f"'{model_id}' cannot embed; the local embedding model is '{self.default_model}'.",
                param=param,
            )
        try:
            await self.registry.resolve(model_id, param=param)
        except NotFoundError as exc:
            raise NotFoundError(exc.message, param=param, code=exc.code) from None

    def count_tokens(self, text: str) -> int:
        """Tokens by the bundled model's WordPiece tokenizer, whatever the store's model:
        chunk sizes are then the same for every store, and no tokenizer is downloaded."""
        return self.local.count_tokens(text)

    async def embed(self, model_id: str, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.local.dimensions), dtype=np.float32)
        if self.is_local(model_id):
            return await self.local.embed(texts)
        resolved = await self.registry.resolve(model_id, param="embedding_model")
        rows: list[list[float]] = []
        for start in range(0, len(texts), _REMOTE_BATCH):
            batch = texts[start : start + _REMOTE_BATCH]
            answer = await resolved.provider.embed(
                {"model": resolved.model, "input": batch, "encoding_format": "float"}
            )
            data = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
            if len(data) != len(batch):
                raise UpstreamError(
                    f"'{model_id}' returned {len(data)} embeddings for {len(batch)} inputs"
                )
            rows.extend(d["embedding"] for d in data)
        vectors = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def response(self, vectors: np.ndarray, texts: list[str]) -> dict:
        """An OpenAI `CreateEmbeddingResponse` for the bundled model's vectors."""
        tokens = sum(self.local.count_tokens(t) + 2 for t in texts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": row.tolist()}
                for i, row in enumerate(vectors)
            ],
            "model": self.default_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
