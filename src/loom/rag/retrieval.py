"""The one entry point for searching vector stores, shared by the HTTP route and file_search.

`POST /v1/vector_stores/{id}/search` and the `file_search` tool of the Responses engine
both call `Retrieval.search`; neither touches the tables, the embedder or the ranking
directly. Keep this signature stable: the tool depends on it.
"""

from __future__ import annotations

from typing import Any, Protocol

from loom.errors import InvalidRequestError, NotFoundError

Hit = dict[str, Any]


class SearchBackend(Protocol):
    """What `Retrieval` needs from the rest of `rag/`: owned stores and a hybrid search."""

    async def missing_vector_stores(self, owner: str, ids: list[str]) -> list[str]: ...

    async def search(
        self,
        owner: str,
        vector_store_ids: list[str],
        queries: list[str],
        *,
        max_num_results: int,
        filters: dict[str, Any] | None,
        score_threshold: float | None,
    ) -> list[Hit]: ...


class Retrieval:
    """Search over an owner's vector stores.

    - `search(owner, vector_store_ids, query, max_num_results=10, filters=None,
      score_threshold=None)` returns hits best first, each
      `{"file_id", "filename", "score" (0..1), "attributes" (dict),
      "content": [{"type": "text", "text": ...}]}`, OpenAI's vector store search result
      shape. A list `query` searches each string and fuses them into one ranking.
    - `require_vector_stores(owner, ids)` validates ids without searching (cheap: one
      query), raising the same errors `search` raises for unknown ids.

    Errors (all `loom.errors.LoomError`, so the edge renders them as OpenAI errors):
    `NotFoundError` with `param="vector_store_ids"` naming the first vector store id that
    does not exist for this owner; `InvalidRequestError` with `param="filters"` for an
    unknown filter type or a malformed filter; `InvalidRequestError` with `param="query"`
    for an empty query and `param="max_num_results"` outside 1..50.
    """

    def __init__(self, backend: SearchBackend) -> None:
        self._backend = backend

    async def require_vector_stores(self, owner: str, ids: list[str]) -> None:
        if not ids:
            raise InvalidRequestError(
                "At least one vector store id is required.", param="vector_store_ids"
            )
        missing = await self._backend.missing_vector_stores(owner, list(ids))
        if missing:
            raise NotFoundError(
                f"Vector store with id '{missing[0]}' not found.", param="vector_store_ids"
            )

    async def search(
        self,
        owner: str,
        vector_store_ids: list[str],
        query: str | list[str],
        *,
        max_num_results: int = 10,
        filters: dict | None = None,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        queries = [query] if isinstance(query, str) else list(query)
        queries = [q for q in queries if isinstance(q, str) and q.strip()]
        if not queries:
            raise InvalidRequestError("'query' must be a non-empty string.", param="query")
        if not 1 <= max_num_results <= 50:
            raise InvalidRequestError(
                "'max_num_results' must be between 1 and 50.", param="max_num_results"
            )
        await self.require_vector_stores(owner, vector_store_ids)
        return await self._backend.search(
            owner,
            list(vector_store_ids),
            queries,
            max_num_results=max_num_results,
            filters=filters,
            score_threshold=score_threshold,
        )
