"""Conversations and their items: the durable history behind `/v1/conversations`.

Items get increasing positions within their conversation. Appending bumps the
conversation's `next_position` counter with one UPDATE ... RETURNING: that statement
allocates the block of positions and, on PostgreSQL, row-locks the conversation until the
transaction ends, so two concurrent turns land as two contiguous blocks, never interleaved
(SQLite gets the same from its single writer). `append_items_in` is that step on a caller's
connection, which is how a response and its conversation items commit together.
Paging uses the (conversation_id, position) primary key, so a page costs the same at item
10 as at item 100,000. `append_items_sync` is the same append on a plain SQLite DB-API
connection, for the group committer (`group_commit.py`). A turn's history is read with one
query, its items' JSON decoded in one `orjson.loads` call rather than one per row.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
import sqlalchemy as sa
from pysqlite3 import dbapi2 as pysqlite3
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from loom.store.columns import dump_json
from loom.store.db import Database
from loom.store.errors import DuplicateIdError
from loom.store.group_commit import qmark_sql
from loom.store.history_cache import HistoryCache
from loom.store.paging import Order, ascending, beyond, check_limit, ordered, split_page
from loom.store.pg_driver import dollar_sql
from loom.store.schema import conversation_items as items_t
from loom.store.schema import conversations as conv_t

Json = dict[str, Any]


async def append_items_in(
    conn: AsyncConnection, owner: str, conversation_id: str, items: list[Json]
) -> bool:
    """Append `items` (each with an `id`) inside the caller's transaction.

    False, with nothing written, if the conversation is not this owner's. Raises
    DuplicateIdError if an item id is already in the conversation; the caller's
    transaction must then roll back.
    """
    return await _append_in(conn, owner, conversation_id, items) is not None


async def _append_in(
    conn: AsyncConnection, owner: str, conversation_id: str, items: list[Json]
) -> int | None:
    """`append_items_in`, giving the first item's position (None: not this owner's)."""
    if conn.dialect.name == "postgresql" and items:
        return await _append_pg(conn, owner, conversation_id, items)
    bump = (
        sa.update(conv_t)
        .where(conv_t.c.owner == owner, conv_t.c.id == conversation_id)
        .values(next_position=conv_t.c.next_position + len(items))
        .returning(conv_t.c.next_position)
    )
    end = (await conn.execute(bump)).scalar_one_or_none()
    if end is None:
        return None
    start = end - len(items)
    if not items:
        return start
    rows = [
        {
            "conversation_id": conversation_id,
            "position": start + offset,
            "item_id": item["id"],
            "owner": owner,
            "item": item,
        }
        for offset, item in enumerate(items)
    ]
    try:
        await conn.execute(sa.insert(items_t), rows)
    except IntegrityError as exc:
        raise DuplicateIdError(
            f"an item id is already in conversation {conversation_id!r}"
        ) from exc
    return start


# PostgreSQL: the position bump and the item rows in one statement, one round trip. The
# UPDATE row-locks the conversation as the two-statement form does, so concurrent turns
# still land as contiguous blocks; with no conversation row, no item is inserted.
_PG_APPEND = sa.text(
    f"""
    WITH bump AS (
        UPDATE {conv_t.name} SET next_position = next_position + :count
        WHERE owner = :owner AND id = :id
        RETURNING next_position
    ), added AS (
        INSERT INTO {items_t.name} (conversation_id, position, item_id, owner, item)
        SELECT :id, bump.next_position - :count + new.ord - 1, new.item_id, :owner, new.item
        FROM bump, unnest(:item_ids, :texts) WITH ORDINALITY AS new(item_id, item, ord)
        RETURNING 1
    )
    SELECT next_position - :count FROM bump
    """
).bindparams(
    sa.bindparam("count", type_=sa.BigInteger),
    sa.bindparam("item_ids", type_=postgresql.ARRAY(sa.Text)),
    sa.bindparam("texts", type_=postgresql.ARRAY(sa.Text)),
)


async def _append_pg(
    conn: AsyncConnection, owner: str, conversation_id: str, items: list[Json]
) -> int | None:
    params = {
        "count": len(items),
        "owner": owner,
        "id": conversation_id,
        "item_ids": [item["id"] for item in items],
        "texts": [dump_json(item) for item in items],
    }
    try:
        return (await conn.execute(_PG_APPEND, params)).scalar_one_or_none()
    except IntegrityError as exc:
        raise DuplicateIdError(
            f"an item id is already in conversation {conversation_id!r}"
        ) from exc


@functools.cache
def _sync_append_sql() -> tuple[str, str]:
    bump = (
        sa.update(conv_t)
        .where(conv_t.c.owner == sa.bindparam("owner"), conv_t.c.id == sa.bindparam("id"))
        .values(next_position=conv_t.c.next_position + sa.bindparam("count", type_=sa.BigInteger))
        .returning(conv_t.c.next_position)
    )
    bump_sql, bump_names = qmark_sql(bump)
    assert bump_names == ("count", "owner", "id")
    insert_sql, insert_names = qmark_sql(sa.insert(items_t))
    assert insert_names == ("conversation_id", "position", "item_id", "owner", "item")
    return bump_sql, insert_sql


def append_items_sync(conn: Any, owner: str, conversation_id: str, items: list[Json]) -> bool:
    """`append_items_in` on a SQLite DB-API connection inside an open transaction."""
    return _append_sync(conn, owner, conversation_id, items) is not None


def _append_sync(conn: Any, owner: str, conversation_id: str, items: list[Json]) -> int | None:
    bump_sql, insert_sql = _sync_append_sql()
    row = conn.execute(bump_sql, (len(items), owner, conversation_id)).fetchone()
    if row is None:
        return None
    start = row[0] - len(items)
    if not items:
        return start
    rows = [
        (conversation_id, start + offset, item["id"], owner, dump_json(item))
        for offset, item in enumerate(items)
    ]
    try:
        conn.executemany(insert_sql, rows)
    except pysqlite3.IntegrityError as exc:
        raise DuplicateIdError(
            f"an item id is already in conversation {conversation_id!r}"
        ) from exc
    return start


def _decode_all(texts: list[str]) -> list[Json]:
    """Stored item texts to dicts, in one parse."""
    return orjson.loads("[" + ",".join(texts) + "]") if texts else []


def _copy(items: list[Json]) -> list[Json]:
    """Items as they read back from the database (fresh dicts, JSON types only)."""
    return orjson.loads(dump_json(items)) if items else []


class ConversationStore:
    def __init__(self, db: Database, history: HistoryCache | None = None) -> None:
        self._db = db
        self.history = history if history is not None else HistoryCache()

    async def create(self, owner: str, conversation: Json, items: list[Json]) -> None:
        """Store a conversation dict (`id`, `created_at`, `metadata`, ...) and its first
        items, together. Raises DuplicateIdError if the id or an item id repeats."""
        row = {
            "id": conversation["id"],
            "owner": owner,
            "created_at": float(conversation.get("created_at") or 0),
            "next_position": 0,
            "conversation": conversation,
        }
        async with self._db.write() as conn:
            try:
                await conn.execute(sa.insert(conv_t).values(row))
            except IntegrityError as exc:
                raise DuplicateIdError(
                    f"conversation {conversation['id']!r} already exists"
                ) from exc
            await append_items_in(conn, owner, conversation["id"], items)
        self.history.put((owner, conversation["id"]), _copy(items), len(items) - 1, 0)

    async def get(self, owner: str, id: str) -> Json | None:
        async with self._db.read() as conn:
            return await _conversation(conn, owner, id)

    async def list(
        self, owner: str, *, after: str | None = None, limit: int = 20, order: Order = "desc"
    ) -> tuple[list[Json], bool]:
        """A page of this owner's conversation dicts by created_at (ties by id), and
        has_more. An `after` id naming no conversation of this owner gives an empty page."""
        asc, limit = ascending(order), check_limit(limit)
        key = [conv_t.c.created_at, conv_t.c.id]
        query = sa.select(conv_t.c.conversation).where(conv_t.c.owner == owner)
        async with self._db.read() as conn:
            if after is not None:
                cursor = (
                    await conn.execute(
                        sa.select(*key).where(conv_t.c.owner == owner, conv_t.c.id == after)
                    )
                ).first()
                if cursor is None:
                    return [], False
                query = query.where(beyond(key, tuple(cursor), asc))
            query = query.order_by(*ordered(key, asc)).limit(limit + 1)
            found = (await conn.execute(query)).scalars().all()
        return split_page(found, limit)

    async def update_metadata(self, owner: str, id: str, metadata: Any) -> Json | None:
        """Replace the conversation's metadata; the updated conversation, or None."""
        async with self._db.write() as conn:
            current = await _conversation(conn, owner, id, for_update=True)
            if current is None:
                return None
            updated = {**current, "metadata": metadata}
            await conn.execute(
                sa.update(conv_t)
                .where(conv_t.c.owner == owner, conv_t.c.id == id)
                .values(conversation=updated)
            )
        return updated

    async def delete(self, owner: str, id: str) -> bool:
        """Delete the conversation and all its items."""
        self.history.drop((owner, id))
        async with self._db.write() as conn:
            await conn.execute(
                sa.delete(items_t).where(items_t.c.owner == owner, items_t.c.conversation_id == id)
            )
            result = await conn.execute(
                sa.delete(conv_t).where(conv_t.c.owner == owner, conv_t.c.id == id)
            )
        return result.rowcount > 0

    async def append_items(
        self,
        owner: str,
        id: str,
        items: list[Json],
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Append items as one contiguous block; False if the conversation is unknown.

        With `conn`, the append joins that open write transaction instead of its own.
        """
        if conn is not None:
            return await append_items_in(conn, owner, id, items)
        if self._db.committer is not None:
            start = await self._db.committer.run(
                functools.partial(_append_sync, owner=owner, conversation_id=id, items=items)
            )
        else:
            async with self._db.write() as own:
                start = await _append_in(own, owner, id, items)
        if start is None:
            return False
        self.history.extend((owner, id), start, _copy(items))
        return True

    async def list_items(
        self,
        owner: str,
        id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
    ) -> tuple[list[Json], bool] | None:
        """A page of items and has_more; None if the conversation is unknown. An `after`
        item id not in the conversation gives an empty page."""
        asc, limit = ascending(order), check_limit(limit)
        key = [items_t.c.position]
        query = sa.select(items_t.c.item).where(
            items_t.c.conversation_id == id, items_t.c.owner == owner
        )
        if after is not None:
            cursor = (
                sa.select(items_t.c.position)
                .where(items_t.c.conversation_id == id, items_t.c.item_id == after)
                .scalar_subquery()
            )
            # An unknown cursor makes the subquery NULL, which matches no row.
            query = query.where(beyond(key, [cursor], asc))
        query = query.order_by(*ordered(key, asc)).limit(limit + 1)
        async with self._db.read() as conn:
            if not await _exists(conn, owner, id):
                return None
            items = (await conn.execute(query)).scalars().all()
        return split_page(items, limit)

    async def all_items(self, owner: str, id: str) -> list[Json] | None:
        """Every item in order (to build a model's context); None if unknown.

        What this process has cached of the history is checked and brought up to date in
        one statement (see history_cache.py); the history is read whole only the first
        time, or when items were deleted."""
        key = (owner, id)
        cached = self.history.get(key)
        after = None if cached is None else (cached.last, cached.deletions)
        if self._db.reader is not None:
            found = await self._db.reader.run(functools.partial(_history_sync, owner, id, after))
        else:
            async with self._db.driver(write=False) as pg:
                found = await _history_pg(pg, owner, id, after)
        if found is None:
            self.history.drop(key)
            return None
        whole, deletions, rows = found
        if not whole and not rows:
            assert cached is not None
            return list(cached.items)
        items = _decode_all([text for _, text in rows])
        if not whole:
            assert cached is not None
            items = cached.items + items
        self.history.put(key, items, rows[-1][0] if rows else -1, deletions)
        return list(items)

    async def get_item(self, owner: str, id: str, item_id: str) -> Json | None:
        query = sa.select(items_t.c.item).where(
            items_t.c.owner == owner,
            items_t.c.conversation_id == id,
            items_t.c.item_id == item_id,
        )
        async with self._db.read() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def delete_item(self, owner: str, id: str, item_id: str) -> bool:
        query = sa.delete(items_t).where(
            items_t.c.owner == owner,
            items_t.c.conversation_id == id,
            items_t.c.item_id == item_id,
        )
        self.history.drop((owner, id))
        async with self._db.write() as conn:
            if (await conn.execute(query)).rowcount == 0:
                return False
            # What tells every process's history cache that this history shrank.
            await conn.execute(
                sa.update(conv_t)
                .where(conv_t.c.owner == owner, conv_t.c.id == id)
                .values(deletions=conv_t.c.deletions + 1)
            )
        return True


async def _conversation(
    conn: AsyncConnection, owner: str, id: str, *, for_update: bool = False
) -> Json | None:
    query = sa.select(conv_t.c.conversation).where(conv_t.c.owner == owner, conv_t.c.id == id)
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).scalar_one_or_none()


async def _exists(conn: AsyncConnection, owner: str, id: str) -> bool:
    query = sa.select(conv_t.c.id).where(conv_t.c.owner == owner, conv_t.c.id == id)
    return (await conn.execute(query)).first() is not None


# A history read. `after` is None, or (the last cached position, the cached deletion
# count). The answer is None (no such conversation), or (whole, deletions, rows): `whole`
# says the rows are the whole history rather than the items past the cached ones,
# `deletions` is the conversation's deletion count; rows are (position, text).
History = tuple[bool, int, list[tuple[int, str]]] | None


@functools.cache
def _history_query() -> sa.Select:
    """One statement, so one snapshot and one round trip: the conversation's deletion
    count (no row at all: not this owner's conversation), outer-joined to the items past
    `after`, oldest first (a row with NULLs for the item when there is none). Its cost
    does not grow with the history: no row at or before `after` is read."""
    conv_id, owner = sa.bindparam("id"), sa.bindparam("owner")
    newer = sa.and_(
        items_t.c.conversation_id == conv_id,
        items_t.c.owner == owner,
        items_t.c.position > sa.bindparam("after", type_=sa.BigInteger),
    )
    text = sa.type_coerce(items_t.c.item, sa.Text)  # decoded in one parse, not per row
    return (
        sa.select(conv_t.c.deletions, items_t.c.position, text)
        .select_from(conv_t.outerjoin(items_t, newer))
        .where(conv_t.c.owner == owner, conv_t.c.id == conv_id)
        .order_by(items_t.c.position)
    )


def _history_answer(rows: list[Any], after: tuple[int, int] | None) -> History | bool:
    """What the rows of `_history_query` say; False when items were deleted since the
    cached read, so the history must be read whole."""
    if not rows:
        return None
    deletions = rows[0][0]
    items = [(row[1], row[2]) for row in rows if row[1] is not None]
    if after is None:
        return True, deletions, items
    if deletions != after[1]:
        return False
    return False, deletions, items


@functools.cache
def _history_pg_sql() -> tuple[str, tuple[str, ...]]:
    return dollar_sql(_history_query())


async def _history_pg(pg: Any, owner: str, id: str, after: tuple[int, int] | None) -> History:
    """The history read on an asyncpg connection (pg_driver.py)."""
    sql, names = _history_pg_sql()
    params = {"id": id, "owner": owner, "after": -1 if after is None else after[0]}
    answer = _history_answer(await pg.fetch(sql, *[params[n] for n in names]), after)
    if answer is False:  # items were deleted: read it whole
        return await _history_pg(pg, owner, id, None)
    return answer  # type: ignore[return-value]


@functools.cache
def _history_sql() -> tuple[str, tuple[str, ...]]:
    return qmark_sql(_history_query())


def _history_sync(owner: str, id: str, after: tuple[int, int] | None, conn: Any) -> History:
    """The history read on a SQLite DB-API connection (the reader's thread)."""
    sql, names = _history_sql()
    params = {"id": id, "owner": owner, "after": -1 if after is None else after[0]}
    answer = _history_answer(conn.execute(sql, [params[n] for n in names]).fetchall(), after)
    if answer is False:
        return _history_sync(owner, id, None, conn)
    return answer  # type: ignore[return-value]
