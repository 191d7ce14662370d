"""Vector stores, the files attached to them and file batches: rows and their OpenAI objects.

A vector store's `file_counts` and `usage_bytes`, and a batch's counts, are computed from
the attachments each time they are read, so they can never drift from the truth. An
attachment's `status` moves in_progress -> completed | failed | cancelled; the ingestion
worker claims in-progress attachments with a lease (`lease_until`) so that two workers,
or two Loom processes on one PostgreSQL, do not ingest the same one at once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from loom.store import chunk_index
from loom.store.db import Database
from loom.store.errors import DuplicateIdError
from loom.store.paging import Order, ascending, beyond, check_limit, ordered, split_page
from loom.store.retrieval_schema import chunks as chunks_t
from loom.store.retrieval_schema import file_batches as batches_t
from loom.store.retrieval_schema import vector_store_files as vsf_t
from loom.store.retrieval_schema import vector_stores as vs_t

Json = dict[str, Any]
STATUSES = ("in_progress", "completed", "failed", "cancelled")
_TOUCH_EVERY = 60  # seconds


def _counts(rows: list[Any]) -> Json:
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in rows:
        counts[status] = counts.get(status, 0) + n
    counts["total"] = sum(counts[s] for s in STATUSES)
    return counts


def store_object(row: Any, counts: Json, usage: int, now: int) -> Json:
    if row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    else:
        status = "in_progress" if counts["in_progress"] else "completed"
    return {
        "id": row.id,
        "object": "vector_store",
        "created_at": row.created_at,
        "name": row.name,
        "usage_bytes": usage,
        "file_counts": counts,
        "status": status,
        "expires_after": row.expires_after,
        "expires_at": row.expires_at,
        "last_active_at": row.last_active_at,
        "metadata": row.metadata or {},
        "embedding_model": row.embedding_model,
    }


def file_object(row: Any) -> Json:
    return {
        "id": row.file_id,
        "object": "vector_store.file",
        "usage_bytes": row.usage_bytes,
        "created_at": row.created_at,
        "vector_store_id": row.vector_store_id,
        "status": row.status,
        "last_error": row.last_error,
        "chunking_strategy": row.chunking_strategy,
        "attributes": row.attributes,
    }


def batch_object(row: Any, counts: Json) -> Json:
    if row.cancelled:
        status = "cancelled"
    elif counts["in_progress"]:
        status = "in_progress"
    elif counts["total"] and counts["failed"] == counts["total"]:
        status = "failed"
    else:
        status = "completed"
    return {
        "id": row.id,
        "object": "vector_store.files_batch",
        "created_at": row.created_at,
        "vector_store_id": row.vector_store_id,
        "status": status,
        "file_counts": counts,
    }


class VectorStoreStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- vector stores -------------------------------------------------------------------

    async def create(self, owner: str, record: Json) -> None:
        async with self._db.write() as conn:
            try:
                await conn.execute(sa.insert(vs_t).values(owner=owner, **record))
            except IntegrityError as exc:
                raise DuplicateIdError(f"vector store {record['id']!r} exists") from exc

    async def get(self, owner: str, id: str, now: int) -> Json | None:
        async with self._db.read() as conn:
            row = await _store_row(conn, owner, id)
            if row is None:
                return None
            return store_object(row, *await _store_stats(conn, id), now)

    async def get_row(self, owner: str, id: str) -> Any | None:
        async with self._db.read() as conn:
            return await _store_row(conn, owner, id)

    async def rows(self, owner: str, ids: list[str]) -> list[Any]:
        query = sa.select(vs_t).where(vs_t.c.owner == owner, vs_t.c.id.in_(ids))
        async with self._db.read() as conn:
            return list((await conn.execute(query)).all())

    async def list(
        self, owner: str, now: int, *, after: str | None, limit: int, order: Order
    ) -> tuple[list[Json], bool]:
        asc, limit = ascending(order), check_limit(limit)
        key = [vs_t.c.seq]
        query = sa.select(vs_t).where(vs_t.c.owner == owner)
        if after is not None:
            cursor = (
                sa.select(vs_t.c.seq)
                .where(vs_t.c.owner == owner, vs_t.c.id == after)
                .scalar_subquery()
            )
            query = query.where(beyond(key, [cursor], asc))
        query = query.order_by(*ordered(key, asc)).limit(limit + 1)
        async with self._db.read() as conn:
            rows, more = split_page((await conn.execute(query)).all(), limit)
            out = [store_object(r, *await _store_stats(conn, r.id), now) for r in rows]
        return out, more

    async def update(self, owner: str, id: str, values: Json, now: int) -> Json | None:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(vs_t).where(vs_t.c.owner == owner, vs_t.c.id == id).values(**values)
            )
            if result.rowcount == 0:
                return None
            row = await _store_row(conn, owner, id)
            return store_object(row, *await _store_stats(conn, id), now)

    async def delete(self, owner: str, id: str) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.delete(vs_t).where(vs_t.c.owner == owner, vs_t.c.id == id)
            )
            if result.rowcount == 0:
                return False
            await chunk_index.delete_chunks(conn, chunks_t.c.vector_store_id == id)
            await conn.execute(sa.delete(vsf_t).where(vsf_t.c.vector_store_id == id))
            await conn.execute(sa.delete(batches_t).where(batches_t.c.vector_store_id == id))
        return True

    async def missing(self, owner: str, ids: list[str]) -> list[str]:
        query = sa.select(vs_t.c.id).where(vs_t.c.owner == owner, vs_t.c.id.in_(ids))
        async with self._db.read() as conn:
            found = set((await conn.execute(query)).scalars())
        return [i for i in ids if i not in found]

    async def touch(self, ids: list[str], now: int) -> None:
        """Record activity (for `last_active_at` and `expires_after`), at most once a
        minute per store, so searches do not queue behind each other for SQLite's writer."""
        stale = sa.select(vs_t.c.id, vs_t.c.expires_after).where(
            vs_t.c.id.in_(ids), vs_t.c.last_active_at < now - _TOUCH_EVERY
        )
        async with self._db.read() as conn:
            if not (await conn.execute(stale)).first():
                return
        async with self._db.write() as conn:
            for row in (await conn.execute(stale)).all():
                values: Json = {"last_active_at": now}
                after = row.expires_after
                if after and after.get("anchor") == "last_active_at":
                    values["expires_at"] = now + int(after["days"]) * 86400
                await conn.execute(sa.update(vs_t).where(vs_t.c.id == row.id).values(**values))

    # -- attached files ------------------------------------------------------------------

    async def attach(
        self, owner: str, vector_store_id: str, attachments: list[Json], batch: Json | None = None
    ) -> list[Json]:
        """Attach files (each: file_id, attributes, chunking_strategy, usage_bytes) as
        in_progress; a file already attached is re-ingested with the new settings."""
        out: list[Json] = []
        async with self._db.write() as conn:
            if batch is not None:
                await conn.execute(sa.insert(batches_t).values(owner=owner, **batch))
            for a in attachments:
                where = sa.and_(
                    vsf_t.c.vector_store_id == vector_store_id, vsf_t.c.file_id == a["file_id"]
                )
                await chunk_index.delete_chunks(
                    conn,
                    sa.and_(
                        chunks_t.c.vector_store_id == vector_store_id,
                        chunks_t.c.file_id == a["file_id"],
                    ),
                )
                await conn.execute(sa.delete(vsf_t).where(where))
                await bump_version(conn, vector_store_id)
                await conn.execute(
                    sa.insert(vsf_t).values(
                        vector_store_id=vector_store_id,
                        owner=owner,
                        status="in_progress",
                        batch_id=batch["id"] if batch else None,
                        **a,
                    )
                )
                row = (await conn.execute(sa.select(vsf_t).where(where))).first()
                out.append(file_object(row))
        return out

    async def get_file(self, owner: str, vector_store_id: str, file_id: str) -> Json | None:
        async with self._db.read() as conn:
            row = await _file_row(conn, owner, vector_store_id, file_id)
        return None if row is None else file_object(row)

    async def list_files(
        self,
        owner: str,
        vector_store_id: str,
        *,
        status: str | None,
        batch_id: str | None = None,
        after: str | None,
        limit: int,
        order: Order,
    ) -> tuple[list[Json], bool]:
        asc, limit = ascending(order), check_limit(limit)
        key = [vsf_t.c.seq]
        query = sa.select(vsf_t).where(
            vsf_t.c.owner == owner, vsf_t.c.vector_store_id == vector_store_id
        )
        if status is not None:
            query = query.where(vsf_t.c.status == status)
        if batch_id is not None:
            query = query.where(vsf_t.c.batch_id == batch_id)
        if after is not None:
            cursor = (
                sa.select(vsf_t.c.seq)
                .where(vsf_t.c.vector_store_id == vector_store_id, vsf_t.c.file_id == after)
                .scalar_subquery()
            )
            query = query.where(beyond(key, [cursor], asc))
        query = query.order_by(*ordered(key, asc)).limit(limit + 1)
        async with self._db.read() as conn:
            rows, more = split_page((await conn.execute(query)).all(), limit)
        return [file_object(r) for r in rows], more

    async def update_attributes(
        self, owner: str, vector_store_id: str, file_id: str, attributes: Json | None
    ) -> Json | None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(vsf_t)
                .where(
                    vsf_t.c.owner == owner,
                    vsf_t.c.vector_store_id == vector_store_id,
                    vsf_t.c.file_id == file_id,
                )
                .values(attributes=attributes)
            )
            row = await _file_row(conn, owner, vector_store_id, file_id)
        return None if row is None else file_object(row)

    async def detach(self, owner: str, vector_store_id: str, file_id: str) -> bool:
        async with self._db.write() as conn:
            return await _detach(conn, owner, vector_store_id, file_id)

    async def detach_everywhere(self, owner: str, file_id: str) -> None:
        """Remove a file from every vector store of its owner (the file is being deleted)."""
        async with self._db.write() as conn:
            stores = (
                await conn.execute(
                    sa.select(vsf_t.c.vector_store_id).where(
                        vsf_t.c.owner == owner, vsf_t.c.file_id == file_id
                    )
                )
            ).scalars()
            for store_id in list(stores):
                await _detach(conn, owner, store_id, file_id)

    async def chunk_texts(self, vector_store_id: str, file_id: str) -> list[str]:
        query = (
            sa.select(chunks_t.c.text)
            .where(chunks_t.c.vector_store_id == vector_store_id, chunks_t.c.file_id == file_id)
            .order_by(chunks_t.c.position)
        )
        async with self._db.read() as conn:
            return list((await conn.execute(query)).scalars())

    # -- batches -------------------------------------------------------------------------

    async def get_batch(self, owner: str, vector_store_id: str, batch_id: str) -> Json | None:
        async with self._db.read() as conn:
            row = await _batch_row(conn, owner, vector_store_id, batch_id)
            if row is None:
                return None
            return batch_object(row, await _batch_counts(conn, batch_id))

    async def cancel_batch(self, owner: str, vector_store_id: str, batch_id: str) -> Json | None:
        """Mark the batch cancelled; its files not yet ingested become `cancelled`."""
        async with self._db.write() as conn:
            row = await _batch_row(conn, owner, vector_store_id, batch_id)
            if row is None:
                return None
            await conn.execute(
                sa.update(batches_t).where(batches_t.c.id == batch_id).values(cancelled=True)
            )
            await conn.execute(
                sa.update(vsf_t)
                .where(vsf_t.c.batch_id == batch_id, vsf_t.c.status == "in_progress")
                .values(status="cancelled", lease_until=None)
            )
            row = await _batch_row(conn, owner, vector_store_id, batch_id)
            return batch_object(row, await _batch_counts(conn, batch_id))

    # -- ingestion -----------------------------------------------------------------------

    async def claim(self, now: float, lease_seconds: float, limit: int) -> list[Any]:
        """Take a lease on up to `limit` in-progress attachments nobody holds."""
        async with self._db.write() as conn:
            free = sa.or_(vsf_t.c.lease_until.is_(None), vsf_t.c.lease_until < now)
            query = (
                sa.select(vsf_t.c.seq)
                .where(vsf_t.c.status == "in_progress", free)
                .order_by(vsf_t.c.seq)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            seqs = list((await conn.execute(query)).scalars())
            if not seqs:
                return []
            await conn.execute(
                sa.update(vsf_t)
                .where(vsf_t.c.seq.in_(seqs))
                .values(lease_until=now + lease_seconds)
            )
            return list((await conn.execute(sa.select(vsf_t).where(vsf_t.c.seq.in_(seqs)))).all())

    async def release_all_leases(self) -> int:
        """At start-up: whatever this database's workers held is to be redone."""
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(vsf_t)
                .where(vsf_t.c.status == "in_progress", vsf_t.c.lease_until.is_not(None))
                .values(lease_until=None)
            )
        return result.rowcount

    async def finish(
        self,
        claimed: Any,
        *,
        texts: list[str] | None = None,
        vectors: Any = None,
        usage_bytes: int = 0,
        error: Json | None = None,
    ) -> bool:
        """Store a claimed attachment's chunks and mark it completed, or mark it failed.

        Does nothing (False) if the attachment changed since it was claimed: detached,
        cancelled or re-attached.
        """
        async with self._db.write() as conn:
            return await _finish(conn, claimed, texts, vectors, usage_bytes, error)

    async def finish_many(self, done: list[tuple[Any, list[str], Any, int]]) -> None:
        """`finish` for several ingested attachments (row, texts, vectors, usage_bytes), in
        one transaction: one wait for SQLite's writer and one commit for all of them."""
        async with self._db.write() as conn:
            for claimed, texts, vectors, usage in done:
                await _finish(conn, claimed, texts, vectors, usage, None)


async def _finish(
    conn: AsyncConnection,
    claimed: Any,
    texts: list[str] | None,
    vectors: Any,
    usage_bytes: int,
    error: Json | None,
) -> bool:
    current = (
        await conn.execute(
            sa.select(vsf_t.c.seq, vsf_t.c.status).where(
                vsf_t.c.vector_store_id == claimed.vector_store_id,
                vsf_t.c.file_id == claimed.file_id,
            )
        )
    ).first()
    if current is None or current.seq != claimed.seq or current.status != "in_progress":
        return False
    values: Json = {"lease_until": None}
    if error is not None:
        values.update(status="failed", last_error=error)
    else:
        await chunk_index.insert_chunks(
            conn, claimed.owner, claimed.vector_store_id, claimed.file_id, texts or [], vectors
        )
        values.update(status="completed", usage_bytes=usage_bytes)
        await bump_version(conn, claimed.vector_store_id)
    await conn.execute(sa.update(vsf_t).where(vsf_t.c.seq == claimed.seq).values(**values))
    return True


async def _store_row(conn: AsyncConnection, owner: str, id: str) -> Any | None:
    query = sa.select(vs_t).where(vs_t.c.owner == owner, vs_t.c.id == id)
    return (await conn.execute(query)).first()


async def _store_stats(conn: AsyncConnection, id: str) -> tuple[Json, int]:
    rows = (
        await conn.execute(
            sa.select(vsf_t.c.status, sa.func.count(), sa.func.sum(vsf_t.c.usage_bytes))
            .where(vsf_t.c.vector_store_id == id)
            .group_by(vsf_t.c.status)
        )
    ).all()
    return _counts([(r[0], r[1]) for r in rows]), int(sum(r[2] or 0 for r in rows))


async def _file_row(conn: AsyncConnection, owner: str, store_id: str, file_id: str) -> Any:
    query = sa.select(vsf_t).where(
        vsf_t.c.owner == owner, vsf_t.c.vector_store_id == store_id, vsf_t.c.file_id == file_id
    )
    return (await conn.execute(query)).first()


async def _batch_row(conn: AsyncConnection, owner: str, store_id: str, batch_id: str) -> Any:
    query = sa.select(batches_t).where(
        batches_t.c.owner == owner,
        batches_t.c.vector_store_id == store_id,
        batches_t.c.id == batch_id,
    )
    return (await conn.execute(query)).first()


async def _batch_counts(conn: AsyncConnection, batch_id: str) -> Json:
    rows = (
        await conn.execute(
            sa.select(vsf_t.c.status, sa.func.count())
            .where(vsf_t.c.batch_id == batch_id)
            .group_by(vsf_t.c.status)
        )
    ).all()
    return _counts([(r[0], r[1]) for r in rows])


async def _detach(conn: AsyncConnection, owner: str, store_id: str, file_id: str) -> bool:
    result = await conn.execute(
        sa.delete(vsf_t).where(
            vsf_t.c.owner == owner, vsf_t.c.vector_store_id == store_id, vsf_t.c.file_id == file_id
        )
    )
    if result.rowcount == 0:
        return False
    await chunk_index.delete_chunks(
        conn, sa.and_(chunks_t.c.vector_store_id == store_id, chunks_t.c.file_id == file_id)
    )
    await bump_version(conn, store_id)
    return True


async def bump_version(conn: AsyncConnection, store_id: str) -> None:
    """Mark the store's chunks changed, in the transaction that changed them: searches
    reload a cached matrix whose version moved (vector_cache.py)."""
    await conn.execute(
        sa.update(vs_t).where(vs_t.c.id == store_id).values(version=vs_t.c.version + 1)
    )
