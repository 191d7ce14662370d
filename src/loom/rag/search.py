"""Hybrid search: vector similarity and keyword relevance fused into one ranking.

For each query string and each embedding model among the searched stores, the index
gives the nearest chunks by cosine similarity and the best keyword matches (FTS5 BM25 on
SQLite, full-text rank on PostgreSQL), both already restricted by the attribute filter.
A chunk's score is `0.75 * cosine + 0.25 * keyword`, where keyword is its relevance over
the best keyword relevance among the candidates; so scores lie in [0, 1] and a chunk
that matches the query's words outranks an equally similar one that does not. With a
list of queries a chunk keeps its best score. Hits with a score under the threshold are
dropped; the rest come back best first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loom.rag.embeddings import Embeddings
from loom.store import attribute_filters, chunk_index
from loom.store.db import Database
from loom.store.retrieval_schema import vector_store_files as vsf_t
from loom.store.vector_cache import VectorCache
from loom.store.vector_stores import VectorStoreStore

VECTOR_WEIGHT = 0.75
KEYWORD_WEIGHT = 0.25
_MIN_CANDIDATES = 50


class HybridSearch:
    """The `SearchBackend` of `Retrieval`, over the database's chunk index."""

    def __init__(self, db: Database, stores: VectorStoreStore, embeddings: Embeddings) -> None:
        self._db = db
        self._stores = stores
        self._embeddings = embeddings
        self._vectors = VectorCache()

    async def missing_vector_stores(self, owner: str, ids: list[str]) -> list[str]:
        return await self._stores.missing(owner, ids)

    async def search(
        self,
        owner: str,
        vector_store_ids: list[str],
        queries: list[str],
        *,
        max_num_results: int,
        filters: dict[str, Any] | None,
        score_threshold: float | None,
    ) -> list[dict[str, Any]]:
        if filters is not None:
            attribute_filters.validate(filters)
        rows = await self._stores.rows(owner, vector_store_ids)
        by_model: dict[str, list[str]] = {}
        for row in rows:
            by_model.setdefault(row.embedding_model, []).append(row.id)
        condition = (
            None
            if filters is None
            else attribute_filters.clause(filters, vsf_t.c.attributes, self._db.dialect_name)
        )
        embedded = [
            (store_ids, await self._embeddings.embed(model, queries))
            for model, store_ids in by_model.items()
        ]
        best: dict[int, float] = {}
        async with self._db.read() as conn:
            for store_ids, vectors in embedded:
                await self._rank(
                    conn, best, store_ids, queries, vectors, condition, max_num_results
                )
            return await _top_hits(conn, best, max_num_results, score_threshold)

    async def search_embedded(
        self,
        store_ids: list[str],
        queries: list[str],
        vectors: np.ndarray,
        *,
        max_num_results: int,
        filters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """`search` with the query vectors given: for benchmarks that time the index alone.
        The caller has checked that the stores exist and share the vectors' model."""
        condition = (
            None
            if filters is None
            else attribute_filters.clause(filters, vsf_t.c.attributes, self._db.dialect_name)
        )
        best: dict[int, float] = {}
        async with self._db.read() as conn:
            await self._rank(conn, best, store_ids, queries, vectors, condition, max_num_results)
            return await _top_hits(conn, best, max_num_results, None)

    async def _rank(
        self, conn, best, store_ids, queries, vectors, condition, max_num_results
    ) -> None:
        limit = max(_MIN_CANDIDATES, 4 * max_num_results)
        for query, vector in zip(queries, vectors, strict=True):
            scores = await _fused(conn, store_ids, query, vector, condition, limit, self._vectors)
            for chunk_id, score in scores.items():
                if score > best.get(chunk_id, -1.0):
                    best[chunk_id] = score


async def _top_hits(
    conn, best: dict[int, float], max_num_results: int, score_threshold: float | None
) -> list[dict[str, Any]]:
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    if score_threshold is not None:
        ranked = [(i, s) for i, s in ranked if s >= score_threshold]
    ranked = ranked[:max_num_results]
    details = await chunk_index.chunk_details(conn, [i for i, _ in ranked])
    hits = []
    for chunk_id, score in ranked:
        d = details.get(chunk_id)
        if d is None:  # removed between the ranking and this read
            continue
        hits.append(
            {
                "file_id": d.file_id,
                "filename": d.filename,
                "score": round(min(1.0, max(0.0, score)), 6),
                "attributes": d.attributes or {},
                "content": [{"type": "text", "text": d.text}],
            }
        )
    return hits


async def _fused(
    conn, store_ids, query, vector: np.ndarray, condition, limit, cache: VectorCache
) -> dict[int, float]:
    # The vector scan runs on a worker thread while the keyword query runs on the
    # database's thread: the search takes about the longer of the two, not their sum.
    scan = await chunk_index.start_vector_scan(conn, store_ids, vector, condition, limit, cache)
    try:
        keyword = await chunk_index.keyword_candidates(
            conn, store_ids, query, condition, limit, scan
        )
    except BaseException:
        scan.abandon()
        raise
    similar = await scan.finish(conn, list(keyword))
    top_keyword = max(keyword.values(), default=0.0)
    fused: dict[int, float] = {}
    for chunk_id in similar.keys() | keyword.keys():
        cosine = max(0.0, similar.get(chunk_id, 0.0))
        relevance = keyword.get(chunk_id, 0.0) / top_keyword if top_keyword else 0.0
        fused[chunk_id] = VECTOR_WEIGHT * cosine + KEYWORD_WEIGHT * relevance
    return fused
