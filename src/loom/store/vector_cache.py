"""Vectors of PostgreSQL vector stores, held in memory as matrices between searches.

Without pgvector, PostgreSQL can only hand back the float32 bytes of every chunk, and
reading 100k of them per query costs far more than the search itself. So each store's
vectors are read once into a numpy matrix, tagged with the store's `version` (which every
change to its chunks bumps, in the same transaction); a search first reads the versions
(one small query) and reloads only a store whose version moved. The database stays the
truth: a Loom process that never saw a change still sees the new version and reloads, so
several processes on one database agree. The cache is bounded by total bytes (LRU).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loom.store.retrieval_schema import chunks as chunks_t
from loom.store.retrieval_schema import vector_stores as vs_t

MAX_CACHED_BYTES = 1 << 30


@dataclass(frozen=True)
class StoreVectors:
    version: int
    ids: np.ndarray  # int64 chunk ids, ascending
    matrix: np.ndarray  # float32, one unit row per chunk id

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.matrix.nbytes


class PgVectorCache:
    def __init__(self, max_bytes: int = MAX_CACHED_BYTES) -> None:
        self._max = max_bytes
        self._entries: OrderedDict[str, StoreVectors] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, conn: AsyncConnection, store_ids: list[str]) -> list[StoreVectors]:
        versions = dict(
            (
                await conn.execute(
                    sa.select(vs_t.c.id, vs_t.c.version).where(vs_t.c.id.in_(store_ids))
                )
            ).all()
        )
        out = []
        for store_id, version in versions.items():
            entry = self._entries.get(store_id)
            if entry is None or entry.version != version:
                entry = await self._load(conn, store_id, version)
            self._entries.move_to_end(store_id)
            out.append(entry)
        return out

    async def _load(self, conn: AsyncConnection, store_id: str, version: int) -> StoreVectors:
        rows = (
            await conn.execute(
                sa.select(chunks_t.c.id, chunks_t.c.embedding)
                .where(chunks_t.c.vector_store_id == store_id)
                .order_by(chunks_t.c.id)
            )
        ).all()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if rows:
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            matrix = matrix.reshape(len(rows), -1)
        else:
            matrix = np.zeros((0, 0), dtype=np.float32)
        entry = StoreVectors(version, ids, matrix)
        async with self._lock:
            self._entries[store_id] = entry
            total = sum(e.nbytes for e in self._entries.values())
            while total > self._max and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.nbytes
        return entry
