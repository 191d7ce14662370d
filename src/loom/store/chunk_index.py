"""The search index over chunks: writes and the two candidate queries, per backend.

Every chunk row keeps its vector as float32 bytes (`chunks.embedding`); searches scan
them exactly, from a per-store in-memory matrix (vector_cache.py). SQLite also keeps the
vectors in sqlite-vec: `vec0` tables, one per embedding size (`chunk_vec_<dims>`,
partitioned by vector store, cosine distance), which answer for a store too big for the
cache, with `vec_distance_cosine` over the chunk rows when a filter applies. Keywords:
the FTS5 table `chunk_fts` (rowid = chunk id) on SQLite; on PostgreSQL (no pgvector
assumed) full-text search over the generated, GIN-indexed `chunks.tsv`.

Both candidate queries take an optional SQL condition over `vector_store_files.attributes`
(from attribute_filters.py), so a filter decides membership inside the query. A vector
search is started first (`start_vector_scan`: the store versions and, under a filter,
the passing files are read, then the cached matrices are scanned on a worker thread) and
finished after the keyword query, which runs meanwhile on the database's thread. On
SQLite the keyword query then checks membership against the scan's cached rows, the
stores and the filter already resolved there, rather than per match in SQL.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from loom.store.retrieval_schema import chunks as chunks_t
from loom.store.retrieval_schema import files as files_t
from loom.store.retrieval_schema import vector_store_files as vsf_t
from loom.store.vector_cache import StoreVectors, VectorCache

_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_TERMS = 32
_COMMON_FLOOR = 1000
_KEPT_TERMS = 8


def _vec_table(dims: int) -> str:
    return f"chunk_vec_{int(dims)}"


async def _vec_tables(conn: AsyncConnection) -> list[str]:
    rows = await conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type='table' AND name GLOB 'chunk_vec_[0-9]*'"
        " AND name NOT GLOB '*_*_*_*'"
    )
    return [r[0] for r in rows]


async def insert_chunks(
    conn: AsyncConnection,
    owner: str,
    store_id: str,
    file_id: str,
    texts: list[str],
    vectors: np.ndarray,
) -> None:
    if not texts:
        return
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    sqlite = conn.dialect.name == "sqlite"
    rows = [
        {
            "vector_store_id": store_id,
            "file_id": file_id,
            "owner": owner,
            "position": i,
            "text": text,
            "embedding": vectors[i].tobytes(),
        }
        for i, text in enumerate(texts)
    ]
    result = await conn.execute(
        sa.insert(chunks_t).returning(chunks_t.c.id, sort_by_parameter_order=True), rows
    )
    ids = [r[0] for r in result]
    if not sqlite:
        return
    table = _vec_table(vectors.shape[1])
    await conn.exec_driver_sql(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0("
        f"vector_store_id text partition key, embedding float[{vectors.shape[1]}] "
        "distance_metric=cosine)"
    )
    await conn.exec_driver_sql(
        "INSERT INTO chunk_fts(rowid, text) VALUES (?, ?)", list(zip(ids, texts, strict=True))
    )
    await conn.exec_driver_sql(
        f"INSERT INTO {table}(rowid, vector_store_id, embedding) VALUES (?, ?, ?)",
        [(i, store_id, vectors[n].tobytes()) for n, i in enumerate(ids)],
    )


async def delete_chunks(conn: AsyncConnection, where: ColumnElement[bool]) -> None:
    if conn.dialect.name == "sqlite":
        ids = [(i,) for i in (await conn.execute(sa.select(chunks_t.c.id).where(where))).scalars()]
        if ids:
            await conn.exec_driver_sql("DELETE FROM chunk_fts WHERE rowid = ?", ids)
            for table in await _vec_tables(conn):
                await conn.exec_driver_sql(f"DELETE FROM {table} WHERE rowid = ?", ids)
    await conn.execute(sa.delete(chunks_t).where(where))


def _joined(store_ids: list[str], condition: ColumnElement[bool] | None):
    """chunks joined to their attachment, limited to the stores and the filter."""
    join = chunks_t.join(
        vsf_t,
        sa.and_(
            vsf_t.c.vector_store_id == chunks_t.c.vector_store_id,
            vsf_t.c.file_id == chunks_t.c.file_id,
        ),
    )
    where = [chunks_t.c.vector_store_id.in_(store_ids)]
    if condition is not None:
        where.append(condition)
    return join, where


async def _selective_terms(conn: AsyncConnection, terms: list[str]) -> list[str]:
    """The query terms worth scoring: at most _KEPT_TERMS of the rarest, each found in at
    most a fiftieth of all chunks (or _COMMON_FLOOR of them, if more). A very common
    term's BM25 weight is slight, and scoring every chunk it matches would cost more than
    the rest of the search; the vector side still sees the whole query. Document counts
    come from FTS5's vocabulary table on SQLite and from GIN-index counts (capped) on
    PostgreSQL."""
    if conn.dialect.name == "sqlite":
        marks = ",".join("?" * len(terms))
        rows = await conn.exec_driver_sql(  # one round trip: the total first, then the terms
            "SELECT NULL, (SELECT max(id) FROM chunks) UNION ALL"
            f" SELECT term, doc FROM chunk_fts_vocab WHERE term IN ({marks})",
            tuple(terms),
        )
        counts = dict(rows.all())
        total = counts.pop(None, None) or 0
        ceiling = max(_COMMON_FLOOR, total // 50)
    else:
        total = (
            await conn.exec_driver_sql(
                "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'chunks'"
            )
        ).scalar() or 0
        ceiling = max(_COMMON_FLOOR, total // 50)
        listed = (
            sa.func.unnest(sa.literal(terms, sa.ARRAY(sa.String)))
            .table_valued("term")
            .render_derived()
        )
        matching = (
            sa.select(sa.literal(1).label("one"))
            .where(chunks_t.c.tsv.op("@@")(sa.func.to_tsquery("english", listed.c.term)))
            .limit(ceiling + 1)
            .correlate(listed)
            .lateral()
        )
        count = sa.select(sa.func.count()).select_from(matching).scalar_subquery()
        rows = await conn.execute(sa.select(listed.c.term, count.label("doc")))
        counts = dict(rows.all())
    kept = [t for t in terms if counts.get(t, 0) <= ceiling]
    return sorted(kept, key=lambda t: counts.get(t, 0))[:_KEPT_TERMS]


def keyword_terms(query: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        seen.setdefault(word, None)
    return list(seen)[:_MAX_TERMS]


async def keyword_candidates(
    conn: AsyncConnection,
    store_ids: list[str],
    query: str,
    condition: ColumnElement[bool] | None,
    limit: int,
    scan: VectorScan | None = None,
) -> dict[int, float]:
    """Chunk id -> keyword relevance (higher is better, > 0) for the best `limit` matches.

    With a `scan` of the same stores and filter that covers them all (none too big for
    the cache), SQLite checks membership against the scan's cached rows instead of
    looking each match up in SQL."""
    terms = keyword_terms(query)
    if not terms:
        return {}
    join, where = _joined(store_ids, condition)
    if conn.dialect.name == "sqlite":
        terms = await _selective_terms(conn, terms)
        if not terms:
            return {}
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        if scan is not None and scan.covers_all:
            return await _matched_members(conn, match, limit, scan)
        # Matched once and materialized (left to itself SQLite runs the MATCH once per
        # candidate chunk); then each match is checked against the stores and the filter
        # by primary key. As a plain join SQLite drives from the chunks side instead and
        # reads every chunk of the stores (~25 ms at 100k chunks, for a few hundred hits).
        matched = (
            sa.select(
                sa.literal_column("rowid").label("id"),
                sa.func.bm25(sa.literal_column("chunk_fts")).label("bm25"),
            )
            .select_from(sa.table("chunk_fts"))
            .where(sa.literal_column("chunk_fts").op("MATCH")(match))
            .cte("matched")
            .prefix_with("MATERIALIZED")
        )
        member = sa.exists(
            sa.select(sa.literal(1)).select_from(join).where(chunks_t.c.id == matched.c.id, *where)
        )
        query_ = (
            sa.select(matched.c.id, (-matched.c.bm25).label("score"))
            .where(member)
            .order_by(matched.c.bm25, matched.c.id)
            .limit(limit)
        )
    else:
        terms = await _selective_terms(conn, terms)
        if not terms:
            return {}
        tsquery = sa.func.to_tsquery("english", " | ".join(terms))
        score = sa.func.ts_rank(chunks_t.c.tsv, tsquery)
        query_ = (
            sa.select(chunks_t.c.id, score.label("score"))
            .select_from(join)
            .where(chunks_t.c.tsv.op("@@")(tsquery), *where)
            .order_by(sa.desc("score"))
            .limit(limit)
        )
    return {r[0]: float(r[1]) for r in await conn.execute(query_) if r[1] and r[1] > 0}


async def _matched_members(
    conn: AsyncConnection, match: str, limit: int, scan: VectorScan
) -> dict[int, float]:
    """Every FTS5 match with its BM25 (scoring in C is cheap; a per-match membership
    lookup in SQL cost more than all the rest), then the scan's members among them, best
    first, ties by id, as the SQL path orders them."""
    rows = (await conn.exec_driver_sql(_MATCHED, (match,))).all()
    if not rows:
        return {}
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    bm25 = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
    keep = scan.members(ids) & (bm25 < 0)
    ids, bm25 = ids[keep], bm25[keep]
    best = np.lexsort((ids, bm25))[:limit]
    return dict(zip(ids[best].tolist(), (-bm25[best]).tolist(), strict=True))


_MATCHED = "SELECT rowid, bm25(chunk_fts) FROM chunk_fts WHERE chunk_fts MATCH ?"


class VectorScan:
    """A vector search under way: the cached stores' similarities are computed on a worker
    thread (numpy releases the GIL) while the caller runs its keyword query on the
    database's own thread; `finish` then adds the keyword candidates' similarities and
    searches the stores too big for the cache in SQL."""

    def __init__(
        self,
        vector: np.ndarray,
        condition: ColumnElement[bool] | None,
        limit: int,
        jobs: list[tuple[StoreVectors, list[slice] | None]],
        too_big: list[str],
    ) -> None:
        self._vector = vector
        self._condition = condition
        self._limit = limit
        self._jobs = jobs
        self._too_big = too_big
        self._scan: asyncio.Future[list[tuple[np.ndarray, np.ndarray]]] | None = None
        if jobs:
            self._scan = asyncio.ensure_future(asyncio.to_thread(_scan, jobs, vector, limit))

    async def finish(self, conn: AsyncConnection, extra_ids: list[int]) -> dict[int, float]:
        """Chunk id -> cosine similarity for the `limit` nearest chunks of each store, plus
        `extra_ids` (keyword candidates, so every candidate gets a similarity)."""
        out: dict[int, float] = {}
        if self._scan is not None:
            for (entry, parts), (sims, top) in zip(self._jobs, await self._scan, strict=True):
                # sims[k] is the similarity of row rows[k] (all rows, or the slices' rows)
                rows = None if parts is None else _rows(parts)
                ids = entry.ids[top if rows is None else rows[top]]
                out.update(zip(ids.tolist(), sims[top].tolist(), strict=True))
                found = entry.rows_of([i for i in extra_ids if i not in out])
                at = found if rows is None else _positions(found, parts)
                at = at[at >= 0]
                at = at[np.isfinite(sims[at])]
                ids = entry.ids[at if rows is None else rows[at]]
                out.update(zip(ids.tolist(), sims[at].tolist(), strict=True))
        if self._too_big:
            out.update(
                await _uncached(
                    conn, self._too_big, self._vector, self._condition, self._limit, extra_ids
                )
            )
        return out

    @property
    def covers_all(self) -> bool:
        """Whether every searched store is scanned from the cache (none is too big)."""
        return not self._too_big

    def members(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Which of these chunk ids are rows of the scanned stores that pass the filter."""
        inside = np.zeros(len(chunk_ids), dtype=bool)
        for entry, parts in self._jobs:
            rows = entry.locate(chunk_ids)
            if parts is not None:
                rows = _positions(rows, parts)
            inside |= rows >= 0
        return inside

    def abandon(self) -> None:
        """Let the scan end unread (the caller failed before `finish`)."""
        if self._scan is not None:
            self._scan.add_done_callback(lambda f: f.cancelled() or f.exception())


async def start_vector_scan(
    conn: AsyncConnection,
    store_ids: list[str],
    vector: np.ndarray,
    condition: ColumnElement[bool] | None,
    limit: int,
    cache: VectorCache,
) -> VectorScan:
    """Read which cached matrices (and which of their files, under a filter) to scan, and
    start scanning them; the caller must `finish` (or `abandon`) the scan."""
    vector = np.ascontiguousarray(vector, dtype=np.float32)
    cached, too_big = await cache.get(conn, store_ids, vector.shape[0])
    allowed: dict[str, set[str]] = {}
    if cached and condition is not None:
        passing = await conn.execute(
            sa.select(vsf_t.c.vector_store_id, vsf_t.c.file_id).where(
                vsf_t.c.vector_store_id.in_([e.store_id for e in cached]), condition
            )
        )
        for store_id, file_id in passing:
            allowed.setdefault(store_id, set()).add(file_id)
    jobs: list[tuple[StoreVectors, list[slice] | None]] = []
    for entry in cached:
        if len(entry.ids) == 0:
            continue
        parts = None if condition is None else entry.file_slices(allowed.get(entry.store_id, set()))
        if parts is not None and len(parts) == len(entry.file_ids):
            parts = None  # every file passes: scan the whole matrix
        if parts is None or parts:
            jobs.append((entry, parts))
    return VectorScan(vector, condition, limit, jobs, too_big)


async def vector_candidates(
    conn: AsyncConnection,
    store_ids: list[str],
    vector: np.ndarray,
    condition: ColumnElement[bool] | None,
    limit: int,
    extra_ids: list[int],
    cache: VectorCache,
) -> dict[int, float]:
    """`start_vector_scan` and `finish` in one: chunk id -> cosine similarity for the
    `limit` nearest chunks of each store, plus `extra_ids`."""
    scan = await start_vector_scan(conn, store_ids, vector, condition, limit, cache)
    return await scan.finish(conn, extra_ids)


def _scan(
    jobs: list[tuple[StoreVectors, list[slice] | None]], vector: np.ndarray, limit: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per job, the similarity of each row scanned (all rows, or the slices' rows in
    order) and the positions of the `limit` best. Runs on a worker thread: it only reads
    immutable cache entries."""
    out = []
    for entry, parts in jobs:
        if parts is None:
            sims = entry.matrix @ vector
        else:
            sims = np.concatenate([entry.matrix[p] @ vector for p in parts])
        out.append((sims, _best(sims, limit)))
    return out


def _best(sims: np.ndarray, limit: int) -> np.ndarray:
    """The positions of the `limit` highest finite similarities (argpartition over the
    negated similarities puts NaN last and -inf just before it)."""
    count = min(limit, len(sims))
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.arange(len(sims)) if count == len(sims) else np.argpartition(-sims, count - 1)[:count]
    return top[np.isfinite(sims[top])]


def _rows(parts: list[slice]) -> np.ndarray:
    return np.concatenate([np.arange(p.start, p.stop, dtype=np.int64) for p in parts])


def _positions(rows: np.ndarray, parts: list[slice]) -> np.ndarray:
    """Where these row numbers sit in the slices' rows laid end to end (-1: in none).
    The slices are sorted and disjoint."""
    starts = np.asarray([p.start for p in parts], dtype=np.int64)
    stops = np.asarray([p.stop for p in parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(stops - starts)[:-1]])
    k = np.maximum(np.searchsorted(starts, rows, side="right") - 1, 0)
    inside = (rows >= starts[k]) & (rows < stops[k])
    return np.where(inside, offsets[k] + rows - starts[k], -1)


async def _uncached(
    conn: AsyncConnection,
    store_ids: list[str],
    vector: np.ndarray,
    condition: ColumnElement[bool] | None,
    limit: int,
    extra_ids: list[int],
) -> dict[int, float]:
    """Stores too big for the cache: sqlite-vec on SQLite, numpy over the rows read back
    on PostgreSQL."""
    if conn.dialect.name == "sqlite":
        return await _sqlite_vectors(conn, store_ids, vector, condition, limit, extra_ids)
    join, where = _joined(store_ids, condition)
    rows = (
        await conn.execute(
            sa.select(chunks_t.c.id, chunks_t.c.embedding).select_from(join).where(*where)
        )
    ).all()
    if not rows:
        return {}
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
    return _nearest(ids, matrix.reshape(len(rows), -1), vector, limit, extra_ids)


def _nearest(
    ids: np.ndarray, matrix: np.ndarray, vector: np.ndarray, limit: int, extra_ids: list[int]
) -> dict[int, float]:
    """Brute force over rows read back: the `limit` most similar, plus `extra_ids`."""
    sims = matrix @ vector
    top = _best(sims, limit)
    out = dict(zip(ids[top].tolist(), sims[top].tolist(), strict=True))
    wanted = [i for i in extra_ids if i not in out]
    if wanted:
        for pos in np.nonzero(np.isin(ids, np.asarray(wanted, dtype=np.int64)))[0]:
            if np.isfinite(sims[pos]):
                out[int(ids[pos])] = float(sims[pos])
    return out


async def _sqlite_vectors(
    conn: AsyncConnection,
    store_ids: list[str],
    vector: np.ndarray,
    condition: ColumnElement[bool] | None,
    limit: int,
    extra_ids: list[int],
) -> dict[int, float]:
    table = _vec_table(vector.shape[0])
    if table not in await _vec_tables(conn):
        return {}
    blob = vector.tobytes()
    out: dict[int, float] = {}
    if condition is None:
        # vec0's own k-nearest scan, one partition (vector store) at a time.
        for store_id in store_ids:
            rows = await conn.exec_driver_sql(
                f"SELECT rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ?"
                " AND vector_store_id = ?",
                (blob, limit, store_id),
            )
            out.update({r[0]: 1.0 - float(r[1]) for r in rows})
    else:
        # A filter: sqlite-vec's distance over the filtered chunks' own copies of their
        # vectors (vec0 looks rows up by id far more slowly than a table scan reads them).
        join, where = _joined(store_ids, condition)
        distance = sa.func.vec_distance_cosine(chunks_t.c.embedding, blob)
        rows = await conn.execute(
            sa.select(chunks_t.c.id, distance.label("d"))
            .select_from(join)
            .where(*where)
            .order_by("d")
            .limit(limit)
        )
        out.update({r[0]: 1.0 - float(r[1]) for r in rows})
    wanted = [i for i in extra_ids if i not in out]
    if wanted:
        distance = sa.func.vec_distance_cosine(chunks_t.c.embedding, blob)
        rows = await conn.execute(
            sa.select(chunks_t.c.id, distance).where(chunks_t.c.id.in_(wanted))
        )
        out.update({r[0]: 1.0 - float(r[1]) for r in rows})
    return out


def _details_statement() -> sa.Select:
    """Built once (a search then only binds the ids); LEFT JOINs keep chunks (looked up by
    key) as the outer loop, where an inner join would let SQLite drive from the files side."""
    attached = sa.and_(
        vsf_t.c.vector_store_id == chunks_t.c.vector_store_id,
        vsf_t.c.file_id == chunks_t.c.file_id,
    )
    return (
        sa.select(
            chunks_t.c.id,
            chunks_t.c.file_id,
            chunks_t.c.vector_store_id,
            chunks_t.c.text,
            vsf_t.c.attributes,
            files_t.c.filename,
            vsf_t.c.file_id.label("attached"),
        )
        .select_from(
            chunks_t.outerjoin(files_t, files_t.c.id == chunks_t.c.file_id).outerjoin(
                vsf_t, attached
            )
        )
        .where(chunks_t.c.id.in_(sa.bindparam("ids", expanding=True)))
    )


_DETAILS = _details_statement()


async def chunk_details(conn: AsyncConnection, ids: list[int]) -> dict[int, Any]:
    """id -> (id, file_id, vector_store_id, text, attributes, filename) for the hits whose
    file is still attached to their store, in one query."""
    if not ids:
        return {}
    rows = await conn.execute(_DETAILS, {"ids": ids})
    return {
        r.id: _Detail(r.id, r.file_id, r.vector_store_id, r.text, r.attributes, r.filename or "")
        for r in rows
        if r.attached is not None
    }


class _Detail(NamedTuple):
    id: int
    file_id: str
    vector_store_id: str
    text: str
    attributes: Any
    filename: str
