"""Stored responses: the record behind `GET/DELETE /v1/responses/{id}`, `input_items`,
and `previous_response_id`.

A turn is saved by `save_turn` in one transaction together with the items it adds to its
conversation, so a crash or disconnect never leaves half a turn behind. The row is upserted,
never over another owner's row (that is a DuplicateIdError): saving a response id again
replaces the record, which is what a response saved more than once needs (background
responses, saved when created and again when they finish, once they exist).
`chain` walks `previous_response_id` links with one recursive query. On SQLite a turn is
saved by the group committer (group_commit.py), in one transaction with the other turns
that finish at the same time. On PostgreSQL it is one statement, sent without BEGIN and
COMMIT (one round trip where a transaction took three, four with a conversation): for a
plain turn, the multi-row upsert of the plain turns that finish together
(pg_group_commit.py), else a call of `loom_save_turn` (migration m006), which raises
rather than write half a turn, its SQLSTATE saying which error that is.
"""

from __future__ import annotations

import functools
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from loom.store.columns import dump_json
from loom.store.conversations import append_items_sync
from loom.store.db import Database
from loom.store.errors import DuplicateIdError
from loom.store.group_commit import qmark_sql
from loom.store.paging import Order, ascending, beyond, check_limit, ordered, split_page
from loom.store.schema import RESPONSE_COLUMNS
from loom.store.schema import responses as resp_t

Json = dict[str, Any]

# A guard against a cycle of previous_response_id links; far beyond any real chain.
MAX_CHAIN = 10_000

_UPDATABLE = RESPONSE_COLUMNS[2:]  # never the id or the owner


class ResponseStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save_turn(
        self,
        owner: str,
        response: Json,
        input_items: list[Json],
        conversation_id: str | None = None,
        conversation_items: list[Json] | None = None,
    ) -> None:
        """Insert or update the response, and append `conversation_items` to the
        conversation, all in one transaction.

        Raises LookupError (writing nothing) if `conversation_id` is not this owner's
        conversation, and DuplicateIdError if the response id belongs to another owner.
        """
        if self._db.committer is not None:
            await self._db.committer.run(
                functools.partial(
                    _save_turn_sync,
                    owner=owner,
                    response=response,
                    input_items=input_items,
                    conversation_id=conversation_id,
                    conversation_items=conversation_items or [],
                )
            )
            return
        if conversation_id is None:  # on PostgreSQL, from here on
            assert self._db.pg_committer is not None
            values = _stored_row(owner, response, input_items, None)
            if not await self._db.pg_committer.upsert(values):
                raise DuplicateIdError(f"response id {response['id']!r} is taken")
            return
        async with self._db.driver(write=True) as pg:
            await _save_turn_pg(
                pg, owner, response, input_items, conversation_id, conversation_items or []
            )

    async def get(self, owner: str, id: str) -> Json | None:
        """`{"response", "input_items", "conversation_id"}`, or None."""
        query = sa.select(resp_t.c.response, resp_t.c.input_items, resp_t.c.conversation_id)
        query = query.where(resp_t.c.owner == owner, resp_t.c.id == id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return {"response": row[0], "input_items": row[1], "conversation_id": row[2]}

    async def delete(self, owner: str, id: str) -> bool:
        query = sa.delete(resp_t).where(resp_t.c.owner == owner, resp_t.c.id == id)
        async with self._db.write() as conn:
            result = await conn.execute(query)
        return result.rowcount > 0

    async def list(
        self,
        owner: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
        status: str | None = None,
        model: str | None = None,
    ) -> tuple[list[Json], bool]:
        """A page of response dicts by created_at (ties in insertion order), and
        has_more. An `after` id naming no response of this owner gives an empty page.
        `status` and `model`, when given, keep only the responses that match exactly."""
        asc, limit = ascending(order), check_limit(limit)
        key = [resp_t.c.created_at, resp_t.c.seq]
        query = sa.select(resp_t.c.response).where(resp_t.c.owner == owner)
        if status is not None:
            query = query.where(resp_t.c.status == status)
        if model is not None:
            query = query.where(resp_t.c.model == model)
        async with self._db.read() as conn:
            if after is not None:
                cursor = (
                    await conn.execute(
                        sa.select(*key).where(resp_t.c.owner == owner, resp_t.c.id == after)
                    )
                ).first()
                if cursor is None:
                    return [], False
                query = query.where(beyond(key, tuple(cursor), asc))
            query = query.order_by(*ordered(key, asc)).limit(limit + 1)
            found = (await conn.execute(query)).scalars().all()
        return split_page(found, limit)

    async def chain(self, owner: str, id: str) -> list[Json] | None:
        """The responses ending at `id`, oldest first, each `{"response", "input_items"}`;
        None if `id` is unknown. The walk stops at a link to a deleted response."""
        base = (
            sa.select(
                resp_t.c.id,
                resp_t.c.previous_response_id.label("prev"),
                sa.literal(0, sa.Integer).label("depth"),
            )
            .where(resp_t.c.owner == owner, resp_t.c.id == id)
            .cte("chain", recursive=True)
        )
        step = (
            sa.select(resp_t.c.id, resp_t.c.previous_response_id, base.c.depth + 1)
            .join(base, resp_t.c.id == base.c.prev)
            .where(resp_t.c.owner == owner, base.c.depth < MAX_CHAIN)
        )
        walk = base.union_all(step)
        query = (
            sa.select(resp_t.c.response, resp_t.c.input_items)
            .join(walk, resp_t.c.id == walk.c.id)
            .order_by(walk.c.depth.desc())
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        return [{"response": row[0], "input_items": row[1]} for row in rows]


def _row(owner: str, response: Json, input_items: list[Json], conversation_id: str | None) -> Json:
    return {
        "id": response["id"],
        "owner": owner,
        "created_at": float(response.get("created_at") or 0),
        "status": response.get("status"),
        "model": response.get("model"),
        "previous_response_id": response.get("previous_response_id"),
        "conversation_id": conversation_id,
        "response": response,
        "input_items": input_items,
    }


async def _upsert(
    conn: AsyncConnection,
    owner: str,
    response: Json,
    input_items: list[Json],
    conversation_id: str | None,
) -> None:
    values = _row(owner, response, input_items, conversation_id)
    stmt = _upsert_statement(conn.dialect.name)
    if (await conn.execute(stmt, values)).first() is None:
        raise DuplicateIdError(f"response id {response['id']!r} is taken")


# For callers that save a response inside their own transaction (background responses).
upsert_response_in = _upsert


@functools.cache
def _upsert_statement(dialect: str) -> sa.Insert:
    """Built once per dialect and executed with parameters, so each save reuses the
    compiled statement instead of rebuilding the ON CONFLICT clause."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    stmt = insert(resp_t)
    return stmt.on_conflict_do_update(
        index_elements=[resp_t.c.id],
        set_={name: stmt.excluded[name] for name in _UPDATABLE},
        # Never overwrite another owner's response; no row comes back then.
        where=resp_t.c.owner == stmt.excluded.owner,
    ).returning(resp_t.c.seq)


# PostgreSQL: `loom_save_turn` (migrations.py, m006), and the SQLSTATEs it raises.
_PG_SAVE_TURN = "SELECT loom_save_turn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
_PG_SAVE_TURN_ARGS = RESPONSE_COLUMNS
_PG_TAKEN = "LM409"
_PG_NO_CONVERSATION = "LM404"
_PG_UNIQUE_VIOLATION = "23505"  # an item id already in the conversation


def _stored_row(
    owner: str, response: Json, input_items: list[Json], conversation_id: str | None
) -> Json:
    """`_row` with its JSON columns as the text they are stored as."""
    values = _row(owner, response, input_items, conversation_id)
    for name in _JSON_COLUMNS:
        values[name] = dump_json(values[name])
    return values


async def _save_turn_pg(
    pg: Any,
    owner: str,
    response: Json,
    input_items: list[Json],
    conversation_id: str,
    conversation_items: list[Json],
) -> None:
    """A conversation turn's `save_turn` as one statement on an asyncpg connection
    (pg_driver.py): a call of `loom_save_turn`. (A plain turn goes with its group.)"""
    values = _stored_row(owner, response, input_items, conversation_id)
    args = [values[n] for n in _PG_SAVE_TURN_ARGS]
    args += [[item["id"] for item in conversation_items]]
    args += [[dump_json(item) for item in conversation_items]]
    try:
        await pg.fetchval(_PG_SAVE_TURN, *args)
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == _PG_TAKEN:
            raise DuplicateIdError(f"response id {response['id']!r} is taken") from exc
        if exc.sqlstate == _PG_NO_CONVERSATION:
            raise LookupError(f"conversation {conversation_id!r} not found") from exc
        if exc.sqlstate == _PG_UNIQUE_VIOLATION:
            raise DuplicateIdError(
                f"an item id is already in conversation {conversation_id!r}"
            ) from exc
        raise


_JSON_COLUMNS = frozenset({"response", "input_items"})


@functools.cache
def _sync_upsert_sql() -> tuple[str, tuple[str, ...]]:
    keys = list(_row("", {"id": ""}, [], None))
    return qmark_sql(_upsert_statement("sqlite"), column_keys=keys)


def _save_turn_sync(
    conn: Any,
    *,
    owner: str,
    response: Json,
    input_items: list[Json],
    conversation_id: str | None,
    conversation_items: list[Json],
) -> None:
    """`save_turn`'s writes on a SQLite DB-API connection, inside the group committer's
    transaction (a savepoint of its own: raising undoes them)."""
    sql, names = _sync_upsert_sql()
    values = _row(owner, response, input_items, conversation_id)
    params = [dump_json(values[n]) if n in _JSON_COLUMNS else values[n] for n in names]
    if conn.execute(sql, params).fetchone() is None:
        raise DuplicateIdError(f"response id {response['id']!r} is taken")
    if conversation_id is not None and not append_items_sync(
        conn, owner, conversation_id, conversation_items
    ):
        raise LookupError(f"conversation {conversation_id!r} not found")
