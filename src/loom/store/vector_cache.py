"""Each vector store's vectors held in memory as one matrix between searches.

A brute-force scan is exact, and over a numpy matrix it is several times faster than
sqlite-vec's `vec0` scan or than reading float32 bytes back from PostgreSQL (which has no
pgvector here) on every query. So each store's vectors are read once, tagged with the
store's `version` (which every change to its chunks bumps, in the same transaction), and
a search first reads the versions (one small query) and reloads only a store whose
version moved. The database stays the truth: another Loom process's change moves the
version too, so all processes agree. Entries are bounded by total bytes (least recently
used goes first); a store too big for the budget is not cached, and SQLite then searches
it with sqlite-vec in SQL instead.

Attribute filters apply per file, so each entry keeps a file's rows together (rows sorted
by file, `file_bounds` giving each file's slice): a filtered search scans only the slices
of the files that pass the filter, as views of the matrix, without copying or masking.
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
_VERSIONS = sa.select(vs_t.c.id, vs_t.c.version).where(
    vs_t.c.id.in_(sa.bindparam("ids", expanding=True))
)


@dataclass(frozen=True)
class StoreVectors:
    store_id: str
    version: int
    ids: np.ndarray  # int64 chunk ids
    matrix: np.ndarray  # float32, one unit row per chunk
    file_ids: list[str]  # distinct files; rows of file_ids[k] are file_bounds[k]:[k + 1]
    file_bounds: np.ndarray  # int64, len(file_ids) + 1 row offsets
    by_id: np.ndarray  # int64 row numbers in ascending id order
    sorted_ids: np.ndarray  # ids[by_id]

    @property
    def nbytes(self) -> int:
        arrays = (self.ids, self.matrix, self.file_bounds, self.by_id, self.sorted_ids)
        return sum(a.nbytes for a in arrays)

    def locate(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The row number of each of these chunk ids, -1 for those not in the store."""
        if len(self.ids) == 0:
            return np.full(len(chunk_ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.sorted_ids, chunk_ids), len(self.ids) - 1)
        return np.where(self.sorted_ids[at] == chunk_ids, self.by_id[at], -1)

    def rows_of(self, chunk_ids: list[int]) -> np.ndarray:
        """The row numbers of those of these chunk ids that are in the store."""
        rows = self.locate(np.asarray(chunk_ids, dtype=np.int64))
        return rows[rows >= 0]

    def file_slices(self, files: set[str]) -> list[slice]:
        """The row ranges of these files (of those in the store), in row order."""
        bounds = self.file_bounds
        return [
            slice(int(bounds[k]), int(bounds[k + 1]))
            for k, file_id in enumerate(self.file_ids)
            if file_id in files
        ]


class VectorCache:
    def __init__(self, max_bytes: int = MAX_CACHED_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, StoreVectors] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(
        self, conn: AsyncConnection, store_ids: list[str], dims: int
    ) -> tuple[list[StoreVectors], list[str]]:
        """The cached matrices of these stores, and the ids of stores too big to cache."""
        versions = dict((await conn.execute(_VERSIONS, {"ids": store_ids})).all())
        cached, too_big = [], []
        for store_id, version in versions.items():
            entry = self._entries.get(store_id)
            if entry is None or entry.version != version:
                entry = await self._load(conn, store_id, version, dims)
            if entry is None:
                too_big.append(store_id)
                continue
            self._entries.move_to_end(store_id)
            cached.append(entry)
        return cached, too_big

    async def _load(
        self, conn: AsyncConnection, store_id: str, version: int, dims: int
    ) -> StoreVectors | None:
        count = (
            await conn.execute(
                sa.select(sa.func.count()).where(chunks_t.c.vector_store_id == store_id)
            )
        ).scalar_one()
        if count * (dims * 4 + 28) > self.max_bytes:
            self._entries.pop(store_id, None)
            return None
        rows = (
            await conn.execute(
                sa.select(chunks_t.c.id, chunks_t.c.file_id, chunks_t.c.embedding).where(
                    chunks_t.c.vector_store_id == store_id
                )
            )
        ).all()
        rows = [r for r in rows if r[2] is not None and len(r[2]) == dims * 4]
        rows.sort(key=lambda r: (r[1], r[0]))  # each file's rows together
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
        matrix = matrix.reshape(len(rows), dims)
        file_ids: list[str] = []
        starts: list[int] = []
        for n, r in enumerate(rows):
            if not file_ids or r[1] != file_ids[-1]:
                file_ids.append(r[1])
                starts.append(n)
        bounds = np.asarray([*starts, len(rows)], dtype=np.int64)
        by_id = np.argsort(ids, kind="stable")
        entry = StoreVectors(store_id, version, ids, matrix, file_ids, bounds, by_id, ids[by_id])
        async with self._lock:
            self._entries[store_id] = entry
            total = sum(e.nbytes for e in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.nbytes
        return entry
