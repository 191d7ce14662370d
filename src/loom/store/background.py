"""Background responses in the database: their work items (jobs) and their event logs.

A job row says who runs a background response: `queued` (nobody yet), `running` (the
replica named by `lease_owner`, for as long as it renews `lease_expires_at` by heartbeat)
or `done`. Replicas claim queued or lapsed jobs with `SELECT ... FOR UPDATE SKIP LOCKED`,
so two replicas never take the same one. The event log holds each SSE frame once, keyed by
(response_id, seq); it is appended in batches, and on PostgreSQL each append sends a
`NOTIFY` in the same transaction, so followers on other replicas wake at its commit.

The functions taking a connection work inside a caller's transaction: the turn's end is
one transaction (response, conversation items, last events, job done).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loom.store.db import Database
from loom.store.errors import DuplicateIdError
from loom.store.responses import upsert_response_in
from loom.store.schema import background_jobs as jobs_t
from loom.store.schema import response_events as events_t
from loom.store.schema import responses as resp_t

Json = dict[str, Any]
Frame = tuple[int, bytes]

EVENTS_CHANNEL = "loom_events"  # payload: a response id whose log grew or ended
LIVE_CHANNEL = "loom_live"  # payload: "<response id>\n<first seq>\n<frames>", not yet stored
# PostgreSQL refuses NOTIFY payloads from 8000 bytes; larger batches go by the log.
MAX_LIVE_PAYLOAD = 7900
CANCEL_CHANNEL = "loom_cancel"  # payload: a response id someone asked to cancel
JOBS_CHANNEL = "loom_jobs"  # payload: a response id that was queued


async def relaxed_commit_in(conn: AsyncConnection) -> None:
    """Let this transaction's COMMIT return before its WAL reaches the disk (PostgreSQL).

    For the event log on the streaming path: the rows are visible to every replica at
    once and survive any Loom process dying; only a crash of the PostgreSQL server itself
    could lose the last fraction of a second, and then consistently (nothing after a lost
    transaction survives). Waiting for the disk instead adds a flush to every batch of
    events, several milliseconds on a busy machine. A turn's final transaction keeps the
    normal, durable commit.
    """
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")


async def notify_in(conn: AsyncConnection, channel: str, response_id: str) -> None:
    """Wake listeners on other replicas when the transaction commits (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_notify(channel, response_id)))


async def insert_events_in(
    conn: AsyncConnection, response_id: str, frames: list[Frame], notify: bool = True
) -> None:
    if frames:
        rows = [{"response_id": response_id, "seq": s, "frame": f} for s, f in frames]
        await conn.execute(sa.insert(events_t), rows)
    if notify:
        await notify_in(conn, EVENTS_CHANNEL, response_id)


def live_payload(response_id: str, frames: list[Frame]) -> str | None:
    """The NOTIFY payload carrying `frames`, or None if they do not fit in one."""
    payload = f"{response_id}\n{frames[0][0]}\n" + b"".join(f for _, f in frames).decode()
    return payload if len(payload.encode()) <= MAX_LIVE_PAYLOAD else None


def parse_live_payload(payload: str) -> tuple[str, int, list[bytes]]:
    response_id, first, text = payload.split("\n", 2)
    frames = [(chunk + "\n\n").encode() for chunk in text.split("\n\n") if chunk]
    return response_id, int(first), frames


async def response_exists_in(conn: AsyncConnection, response_id: str) -> bool:
    query = sa.select(resp_t.c.id).where(resp_t.c.id == response_id)
    return (await conn.execute(query)).first() is not None


async def lock_job_in(conn: AsyncConnection, response_id: str) -> Json | None:
    """The job row, locked until the transaction ends (SQLite's writer lock does that)."""
    query = sa.select(jobs_t).where(jobs_t.c.response_id == response_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def end_job_in(conn: AsyncConnection, response_id: str, notify: bool = True) -> None:
    await conn.execute(
        sa.update(jobs_t)
        .where(jobs_t.c.response_id == response_id)
        .values(state="done", lease_owner=None, lease_expires_at=None)
    )
    if notify:  # followers re-read and see the end
        await notify_in(conn, EVENTS_CHANNEL, response_id)


class BackgroundStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        owner: str,
        response: Json,
        input_items: list[Json],
        conversation_id: str | None,
        request: Json,
        prelude: list[Frame],
        lease_owner: str | None,
        lease_seconds: float,
    ) -> None:
        """Store the queued response, its job (claimed by `lease_owner` when given) and the
        first events, together. A claimed response is stored `in_progress` (its model call
        is starting), so lists and status filters see it as it is."""
        stored = {**response, "status": "in_progress"} if lease_owner else response
        if self.db.dialect_name == "postgresql":
            # One statement, committed on its own (no BEGIN, SET, COMMIT round trips): this
            # commit is on the way to a background stream's first token. It commits without
            # waiting for the disk, as the event log's batches do (`relaxed_commit_in`).
            values = (
                response["id"],
                owner,
                float(response.get("created_at") or 0),
                stored["status"],
                response.get("model"),
                response.get("previous_response_id"),
                conversation_id,
                _json(stored),
                _json(input_items),
                "running" if lease_owner else "queued",
                _json(request),
                lease_owner,
                time.time() + lease_seconds if lease_owner else None,
                [seq for seq, _ in prelude],
                [frame for _, frame in prelude],
            )
            async with self.db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                if not (await conn.exec_driver_sql(_CREATE_PG, values)).scalar():
                    raise DuplicateIdError(f"response id {response['id']!r} is taken")
            return
        async with self.db.write() as conn:
            await upsert_response_in(conn, owner, stored, input_items, conversation_id)
            await conn.execute(
                sa.insert(jobs_t).values(
                    response_id=response["id"],
                    owner=owner,
                    state="running" if lease_owner else "queued",
                    request=request,
                    lease_owner=lease_owner,
                    lease_expires_at=time.time() + lease_seconds if lease_owner else None,
                )
            )
            await insert_events_in(conn, response["id"], prelude)
            if lease_owner is None:
                await notify_in(conn, JOBS_CHANNEL, response["id"])

    async def publish(self, response_id: str, frames: list[Frame]) -> bool:
        """Send `frames` to the other replicas now, before they are stored (PostgreSQL).
        False if they were not sent (too large): the log's notification must do. On SQLite
        there is no other replica: nothing to send."""
        if self.db.dialect_name != "postgresql":
            return True
        payload = live_payload(response_id, frames)
        if payload is None:
            return False
        async with self.db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.select(sa.func.pg_notify(LIVE_CHANNEL, payload)))
        return True

    async def append(self, response_id: str, frames: list[Frame], notify: bool = True) -> None:
        async with self.db.write() as conn:
            await relaxed_commit_in(conn)
            await insert_events_in(conn, response_id, frames, notify)

    async def events_after(self, response_id: str, after: int, limit: int = 1000) -> list[Frame]:
        query = (
            sa.select(events_t.c.seq, events_t.c.frame)
            .where(events_t.c.response_id == response_id, events_t.c.seq > after)
            .order_by(events_t.c.seq)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [(row[0], bytes(row[1])) for row in await conn.execute(query)]

    async def last_event(self, response_id: str) -> Frame | None:
        query = (
            sa.select(events_t.c.seq, events_t.c.frame)
            .where(events_t.c.response_id == response_id)
            .order_by(events_t.c.seq.desc())
            .limit(1)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (row[0], bytes(row[1]))

    async def job(self, owner: str, response_id: str) -> Json | None:
        query = sa.select(jobs_t.c.state, jobs_t.c.cancel_requested, jobs_t.c.lease_owner).where(
            jobs_t.c.response_id == response_id, jobs_t.c.owner == owner
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return dict(row) if row else None

    async def request_cancel(
        self,
        owner: str,
        response_id: str,
        end_queued: Callable[[AsyncConnection, str], Awaitable[Any]],
    ) -> Json | None:
        """Flag the job for cancelling; end it here (`end_queued`, in this transaction) if
        nobody runs it. Returns the job as it was (None if there is none), so the caller
        knows whom to wait for."""
        async with self.db.write() as conn:
            job = await lock_job_in(conn, response_id)
            if job is None or job["owner"] != owner or job["state"] == "done":
                return job if job and job["owner"] == owner else None
            await conn.execute(
                sa.update(jobs_t)
                .where(jobs_t.c.response_id == response_id)
                .values(cancel_requested=True)
            )
            if job["state"] == "queued":
                await end_queued(conn, response_id)
            else:
                await notify_in(conn, CANCEL_CHANNEL, response_id)
            return job

    async def heartbeat(self, replica: str, ids: list[str], lease_seconds: float) -> list[str]:
        """Renew this replica's leases on the runs it still has (`ids`); return those
        flagged for cancel. A job this replica holds but no longer runs (its end could not
        be stored) is left to lapse, and is settled like any other."""
        if not ids:
            return []
        query = (
            sa.update(jobs_t)
            .where(
                jobs_t.c.lease_owner == replica,
                jobs_t.c.state == "running",
                jobs_t.c.response_id.in_(ids),
            )
            .values(lease_expires_at=time.time() + lease_seconds)
            .returning(jobs_t.c.response_id, jobs_t.c.cancel_requested)
        )
        async with self.db.write() as conn:
            rows = (await conn.execute(query)).all()
        return [row[0] for row in rows if row[1]]

    async def claim_queued(self, replica: str, lease_seconds: float, limit: int) -> list[Json]:
        """Take up to `limit` queued jobs for this replica: [{response_id, owner, request}]."""
        async with self.db.write() as conn:
            query = (
                sa.select(jobs_t.c.response_id, jobs_t.c.owner, jobs_t.c.request)
                .where(jobs_t.c.state == "queued")
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
            for row in rows:
                await conn.execute(
                    sa.update(jobs_t)
                    .where(jobs_t.c.response_id == row["response_id"])
                    .values(
                        state="running",
                        lease_owner=replica,
                        lease_expires_at=time.time() + lease_seconds,
                        attempts=jobs_t.c.attempts + 1,
                    )
                )
                await _set_status_in(conn, row["response_id"], "in_progress")
        return rows

    async def lapsed_ids(self, everyone: bool) -> list[str]:
        """Running jobs whose lease ran out (all running jobs if `everyone`: after a restart
        of the only process)."""
        query = sa.select(jobs_t.c.response_id).where(jobs_t.c.state == "running")
        if not everyone:
            query = query.where(jobs_t.c.lease_expires_at < time.time())
        async with self.db.read() as conn:
            return list((await conn.execute(query)).scalars())


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()  # as JSONText does


# A new background response, its job and its first events, in one statement (PostgreSQL;
# the data-modifying CTEs all run to completion, and insert nothing if the id is taken).
# Run on its own, the statement is its own transaction: `set_config(..., true)` makes that
# transaction's commit skip the wait for the disk (as SET LOCAL would in a block), and a
# job nobody claimed (no lease owner) is announced on `loom_jobs` when it commits.
_CREATE_PG = """
WITH r AS (
  INSERT INTO responses (id, owner, created_at, status, model, previous_response_id,
                         conversation_id, response, input_items)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
  ON CONFLICT (id) DO NOTHING
  RETURNING id
), j AS (
  INSERT INTO background_jobs (response_id, owner, state, request, lease_owner,
                               lease_expires_at)
  SELECT id, $2, $10, $11, $12, $13 FROM r
  RETURNING response_id
), e AS (
  INSERT INTO response_events (response_id, seq, frame)
  SELECT r.id, u.seq, u.frame FROM r, unnest($14::integer[], $15::bytea[]) AS u(seq, frame)
  RETURNING seq
), n AS (
  SELECT pg_notify('loom_jobs', id) FROM r WHERE $12::text IS NULL
)
SELECT (SELECT count(*) FROM r), set_config('synchronous_commit', 'off', true),
       (SELECT count(*) FROM n)
"""


async def _set_status_in(conn: AsyncConnection, response_id: str, status: str) -> None:
    row = (
        await conn.execute(sa.select(resp_t.c.response).where(resp_t.c.id == response_id))
    ).first()
    if row is None:
        return
    response = {**row[0], "status": status}
    await conn.execute(
        sa.update(resp_t).where(resp_t.c.id == response_id).values(status=status, response=response)
    )


async def last_seq_in(conn: AsyncConnection, response_id: str) -> int:
    query = sa.select(sa.func.max(events_t.c.seq)).where(events_t.c.response_id == response_id)
    value = (await conn.execute(query)).scalar()
    return -1 if value is None else int(value)


async def frames_in(conn: AsyncConnection, response_id: str) -> list[bytes]:
    query = (
        sa.select(events_t.c.frame)
        .where(events_t.c.response_id == response_id)
        .order_by(events_t.c.seq)
    )
    return [bytes(f) for f in (await conn.execute(query)).scalars()]


async def requeue_in(conn: AsyncConnection, response_id: str, keep_through: int) -> None:
    """Give the job back to the queue, dropping the events after `keep_through`."""
    await conn.execute(
        sa.delete(events_t).where(
            events_t.c.response_id == response_id, events_t.c.seq > keep_through
        )
    )
    await conn.execute(
        sa.update(jobs_t)
        .where(jobs_t.c.response_id == response_id)
        .values(state="queued", lease_owner=None, lease_expires_at=None)
    )
    await _set_status_in(conn, response_id, "queued")
    await notify_in(conn, JOBS_CHANNEL, response_id)
