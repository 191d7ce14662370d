"""Bring a background response whose run stopped early to a state that is true.

Used when a replica finds another's lease lapsed (the process died), and when a replica
shuts down with work still running. The rule:
- a cancel was asked for: the response ends `cancelled`;
- no output was streamed yet (only `response.created`, `response.queued` and
  `response.in_progress` are in its log): the work goes back to the queue, and any replica
  runs it from its stored request (at most `MAX_ATTEMPTS` times);
- output was streamed: the response ends `failed` with an error that says so, and its
  stream ends with `response.failed`.
It is not run again once output was streamed because clients may already hold those events:
a second run would write different text under the same sequence numbers, and its tool
calls would run twice. Its output so far is kept in the failed response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loom.engine.event_fold import fold_output
from loom.store.background import (
    end_job_in,
    frames_in,
    insert_events_in,
    last_seq_in,
    requeue_in,
)
from loom.store.schema import responses as resp_t

Serialize = Callable[[dict[str, Any]], bytes]
NO_OUTPUT_THROUGH = 2  # sequence numbers 0..2: created, queued, in_progress
MAX_ATTEMPTS = 3


async def _stored_response(conn: AsyncConnection, response_id: str) -> dict[str, Any] | None:
    query = sa.select(resp_t.c.response).where(resp_t.c.id == response_id)
    row = (await conn.execute(query)).first()
    return None if row is None else dict(row[0])


async def _save(conn: AsyncConnection, response: dict[str, Any]) -> None:
    await conn.execute(
        sa.update(resp_t)
        .where(resp_t.c.id == response["id"])
        .values(status=response["status"], response=response)
    )


async def end_failed_in(
    conn: AsyncConnection, response_id: str, serialize: Serialize, message: str
) -> tuple[int, bytes] | None:
    """End the response `failed` with `message`; append its `response.failed` event."""
    response = await _stored_response(conn, response_id)
    if response is None:
        await end_job_in(conn, response_id)
        return None
    frames = await frames_in(conn, response_id)
    response.update(
        status="failed",
        output=fold_output(frames),
        error={"code": "server_error", "message": message},
    )
    await _save(conn, response)
    last = await last_seq_in(conn, response_id)
    events = []
    if last < NO_OUTPUT_THROUGH:
        progress = {**response, "status": "in_progress", "error": None}
        events.append((last + 1, {"type": "response.in_progress", "response": progress}))
        last += 1
    events.append((last + 1, {"type": "response.failed", "response": response}))
    framed = [(seq, serialize({**e, "sequence_number": seq})) for seq, e in events]
    await insert_events_in(conn, response_id, framed)
    await end_job_in(conn, response_id)
    return framed[-1]


async def end_cancelled_in(conn: AsyncConnection, response_id: str) -> None:
    response = await _stored_response(conn, response_id)
    if response is not None:
        response.update(status="cancelled", output=fold_output(await frames_in(conn, response_id)))
        await _save(conn, response)
    await end_job_in(conn, response_id)


async def requeue_or_fail_in(
    conn: AsyncConnection, job: dict[str, Any], serialize: Serialize, why: str
) -> tuple[int, bytes] | None:
    """Settle a stopped run by the rule above; `job` is its locked row."""
    response_id = job["response_id"]
    if job["cancel_requested"]:
        await end_cancelled_in(conn, response_id)
        return None
    last = await last_seq_in(conn, response_id)
    if last <= NO_OUTPUT_THROUGH and job["attempts"] < MAX_ATTEMPTS:
        await requeue_in(conn, response_id, keep_through=1)
        return None
    if last <= NO_OUTPUT_THROUGH:
        why += f" It was started {job['attempts']} times without success."
    else:
        why += " It had already streamed output, so it was not run again."
    return await end_failed_in(conn, response_id, serialize, why)
