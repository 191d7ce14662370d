"""Uploaded files' records: who owns each, its name, size, purpose and where its bytes are.

The bytes themselves are on disk (rag/file_storage.py); a row is written only once the
upload is complete, so a listed file always has its content.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loom.store.db import Database
from loom.store.paging import Order, ascending, beyond, check_limit, ordered, split_page
from loom.store.retrieval_schema import files as files_t

Json = dict[str, Any]


def file_object(row: Any) -> Json:
    """The OpenAI `FileObject` for a `files` row."""
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
        "status_details": None,
    }


class FileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, owner: str, record: Json) -> None:
        """`record` has id, created_at, expires_at, bytes, filename, purpose and path."""
        async with self._db.write() as conn:
            await conn.execute(sa.insert(files_t).values(owner=owner, **record))

    async def get_row(self, owner: str, file_id: str, now: int | None = None) -> Any | None:
        query = sa.select(files_t).where(files_t.c.owner == owner, files_t.c.id == file_id)
        if now is not None:
            query = query.where(sa.or_(files_t.c.expires_at.is_(None), files_t.c.expires_at > now))
        async with self._db.read() as conn:
            return (await conn.execute(query)).first()

    async def missing(self, owner: str, file_ids: list[str], now: int) -> list[str]:
        """The ids among `file_ids` that are not this owner's live files, in order."""
        query = sa.select(files_t.c.id).where(
            files_t.c.owner == owner,
            files_t.c.id.in_(file_ids),
            sa.or_(files_t.c.expires_at.is_(None), files_t.c.expires_at > now),
        )
        async with self._db.read() as conn:
            found = set((await conn.execute(query)).scalars())
        return [i for i in file_ids if i not in found]

    async def list(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10000,
        order: Order = "desc",
    ) -> tuple[list[Json], bool]:
        asc, limit = ascending(order), check_limit(limit)
        key = [files_t.c.seq]
        query = sa.select(files_t).where(
            files_t.c.owner == owner,
            sa.or_(files_t.c.expires_at.is_(None), files_t.c.expires_at > now),
        )
        if purpose is not None:
            query = query.where(files_t.c.purpose == purpose)
        if after is not None:
            cursor = (
                sa.select(files_t.c.seq)
                .where(files_t.c.owner == owner, files_t.c.id == after)
                .scalar_subquery()
            )
            query = query.where(beyond(key, [cursor], asc))
        query = query.order_by(*ordered(key, asc)).limit(limit + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        page, more = split_page(rows, limit)
        return [file_object(r) for r in page], more

    async def delete(self, owner: str, file_id: str) -> Any | None:
        """Delete the record; return the deleted row (for its path), or None."""
        async with self._db.write() as conn:
            row = (
                await conn.execute(
                    sa.delete(files_t)
                    .where(files_t.c.owner == owner, files_t.c.id == file_id)
                    .returning(files_t)
                )
            ).first()
        return row

    async def expired(self, now: int) -> list[Any]:
        query = sa.select(files_t).where(files_t.c.expires_at <= now)
        async with self._db.read() as conn:
            return list((await conn.execute(query)).all())
