"""Stored chat completions: what `store: true` on `/v1/chat/completions` keeps.

Backs `GET /chat/completions` (list, filtered by model and metadata), `GET/DELETE
/chat/completions/{id}` and `GET /chat/completions/{id}/messages`. A completion is written
once, with the input messages that produced it and its request metadata.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from loom.store.db import Database
from loom.store.errors import DuplicateIdError
from loom.store.paging import Order, ascending, beyond, check_limit, ordered, split_page
from loom.store.schema import chat_completion_metadata as meta_t
from loom.store.schema import chat_completions as cc

Json = dict[str, Any]


class ChatCompletionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(
        self,
        owner: str,
        completion: Json,
        input_messages: list[Json],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Store a finished `ChatCompletion` dict; raises DuplicateIdError if its id exists."""
        completion_id = completion["id"]
        row = {
            "id": completion_id,
            "owner": owner,
            "created": float(completion.get("created") or 0),
            "model": completion.get("model") or "",
            "completion": completion,
            "input_messages": input_messages,
            "metadata": metadata,
        }
        pairs = [
            {"completion_id": completion_id, "owner": owner, "key": k, "value": _text(v)}
            for k, v in (metadata or {}).items()
        ]
        try:
            async with self._db.write() as conn:
                await conn.execute(sa.insert(cc).values(row))
                if pairs:
                    await conn.execute(sa.insert(meta_t), pairs)
        except IntegrityError as exc:
            raise DuplicateIdError(f"chat completion {completion_id!r} already exists") from exc

    async def get(self, owner: str, id: str) -> Json | None:
        """`{"completion", "input_messages", "metadata"}`, or None if not this owner's."""
        query = sa.select(cc.c.completion, cc.c.input_messages, cc.c["metadata"]).where(
            cc.c.owner == owner, cc.c.id == id
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return {"completion": row[0], "input_messages": row[1], "metadata": row[2]}

    async def list(
        self,
        owner: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[list[Json], bool]:
        """A page of completion dicts by creation time (ties in insertion order), and
        has_more. An `after` id naming no completion of this owner gives an empty page."""
        asc, limit = ascending(order), check_limit(limit)
        key = [cc.c.created, cc.c.seq]
        query = sa.select(cc.c.completion).where(cc.c.owner == owner)
        if model is not None:
            query = query.where(cc.c.model == model)
        for k, v in (metadata or {}).items():
            matching = sa.select(meta_t.c.completion_id).where(
                meta_t.c.owner == owner, meta_t.c.key == k, meta_t.c.value == _text(v)
            )
            query = query.where(cc.c.id.in_(matching))
        async with self._db.read() as conn:
            if after is not None:
                cursor = (
                    await conn.execute(sa.select(*key).where(cc.c.owner == owner, cc.c.id == after))
                ).first()
                if cursor is None:
                    return [], False
                query = query.where(beyond(key, tuple(cursor), asc))
            query = query.order_by(*ordered(key, asc)).limit(limit + 1)
            completions = (await conn.execute(query)).scalars().all()
        return split_page(completions, limit)

    async def messages(
        self,
        owner: str,
        id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
    ) -> tuple[list[Json], bool] | None:
        """A page of the completion's input messages, each with an `id` (the stored one,
        else `{completion_id}-{index}`), and has_more; None if the completion is unknown."""
        asc, limit = ascending(order), check_limit(limit)
        query = sa.select(cc.c.input_messages).where(cc.c.owner == owner, cc.c.id == id)
        async with self._db.read() as conn:
            stored = (await conn.execute(query)).scalar_one_or_none()
        if stored is None:
            return None
        messages = [
            message if message.get("id") else {"id": f"{id}-{index}", **_without_id(message)}
            for index, message in enumerate(stored)
        ]
        if not asc:
            messages.reverse()
        start = 0
        if after is not None:
            ids = [message["id"] for message in messages]
            if after not in ids:
                return [], False
            start = ids.index(after) + 1
        return split_page(messages[start : start + limit + 1], limit)

    async def delete(self, owner: str, id: str) -> bool:
        async with self._db.write() as conn:
            await conn.execute(
                sa.delete(meta_t).where(meta_t.c.owner == owner, meta_t.c.completion_id == id)
            )
            result = await conn.execute(sa.delete(cc).where(cc.c.owner == owner, cc.c.id == id))
        return result.rowcount > 0


def _text(value: Any) -> str:
    """Metadata values are strings in OpenAI's API; anything else is compared as JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _without_id(message: Json) -> Json:
    return {k: v for k, v in message.items() if k != "id"}
