"""Conversations and their items: the durable history behind `/v1/conversations`.

Items get increasing positions within their conversation. Appending bumps the
conversation's `next_position` counter with one UPDATE ... RETURNING: that statement
allocates the block of positions and, on PostgreSQL, row-locks the conversation until the
transaction ends, so two concurrent turns land as two contiguous blocks, never interleaved
(SQLite gets the same from its single writer). `append_items_in` is that step on a caller's
connection, which is how a response and its conversation items commit together.
Paging uses the (conversation_id, position) primary key, so a page costs the same at item
10 as at item 100,000.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from loom.store.db import Database
from loom.store.errors import DuplicateIdError
from loom.store.paging import Order, ascending, beyond, check_limit, ordered, split_page
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
    bump = (
        sa.update(conv_t)
        .where(conv_t.c.owner == owner, conv_t.c.id == conversation_id)
        .values(next_position=conv_t.c.next_position + len(items))
        .returning(conv_t.c.next_position)
    )
    end = (await conn.execute(bump)).scalar_one_or_none()
    if end is None:
        return False
    if not items:
        return True
    start = end - len(items)
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
    return True


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

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
        async with self._db.write() as own:
            return await append_items_in(own, owner, id, items)

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
        """Every item in order (to build a model's context); None if unknown."""
        query = (
            sa.select(items_t.c.item)
            .where(items_t.c.conversation_id == id, items_t.c.owner == owner)
            .order_by(items_t.c.position)
        )
        async with self._db.read() as conn:
            if not await _exists(conn, owner, id):
                return None
            return list((await conn.execute(query)).scalars())

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
        async with self._db.write() as conn:
            result = await conn.execute(query)
        return result.rowcount > 0


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
