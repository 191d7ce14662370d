"""The API keys made at run time: create, list, revoke, and find an active key by digest.

The key itself never reaches this module; callers hand over its sha256 digest and a
redacted hint. Revoking keeps the row (with `revoked_at`) so a listing shows what existed.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from loom.store.db import Database
from loom.store.paging import beyond, check_limit, ordered, split_page
from loom.store.schema import api_keys as keys_t

Json = dict[str, Any]

_COLUMNS = (
    keys_t.c.id,
    keys_t.c.owner,
    keys_t.c.name,
    keys_t.c.redacted_value,
    keys_t.c.created_at,
    keys_t.c.revoked_at,
)


def _row(row: Any) -> Json:
    """A key as the stores hand it out, from a fetched row's mapping or an inserted dict."""
    revoked_at = row["revoked_at"]
    return {
        "id": row["id"],
        "owner": row["owner"],
        "name": row["name"],
        "redacted_value": row["redacted_value"],
        "created_at": int(row["created_at"]),
        "revoked_at": None if revoked_at is None else int(revoked_at),
    }


class ApiKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, *, key_id: str, digest: str, owner: str, name: str | None, redacted_value: str
    ) -> Json:
        row = {
            "id": key_id,
            "digest": digest,
            "owner": owner,
            "name": name,
            "redacted_value": redacted_value,
            "created_at": time.time(),
            "revoked_at": None,
        }
        async with self._db.write() as conn:
            await conn.execute(sa.insert(keys_t).values(row))
        return _row(row)

    async def find_active(self, digest: str) -> tuple[str, str] | None:
        """`(key_id, owner)` of the unrevoked key with this digest, if there is one."""
        query = sa.select(keys_t.c.id, keys_t.c.owner, keys_t.c.digest).where(
            keys_t.c.digest == digest, keys_t.c.revoked_at.is_(None)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (row.id, row.owner)

    async def get(self, key_id: str) -> Json | None:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(*_COLUMNS).where(keys_t.c.id == key_id))).first()
        return None if row is None else _row(row._mapping)

    async def list(self, *, after: str | None = None, limit: int = 20) -> tuple[list[Json], bool]:
        """A page of keys, oldest first, revoked ones included; and has_more."""
        limit = check_limit(limit)
        key = [keys_t.c.seq]
        query = sa.select(*_COLUMNS)
        async with self._db.read() as conn:
            if after is not None:
                cursor = (
                    await conn.execute(sa.select(keys_t.c.seq).where(keys_t.c.id == after))
                ).first()
                if cursor is None:
                    return [], False
                query = query.where(beyond(key, tuple(cursor), True))
            query = query.order_by(*ordered(key, True)).limit(limit + 1)
            rows = (await conn.execute(query)).all()
        page, has_more = split_page(rows, limit)
        return [_row(r._mapping) for r in page], has_more

    async def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; False if there is no such key. Revoking twice is fine."""
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(keys_t)
                .where(keys_t.c.id == key_id)
                .values(revoked_at=sa.func.coalesce(keys_t.c.revoked_at, time.time()))
            )
        return result.rowcount > 0

    async def count_active(self) -> int:
        query = sa.select(sa.func.count()).where(keys_t.c.revoked_at.is_(None))
        async with self._db.read() as conn:
            return int((await conn.execute(query)).scalar_one())
