"""Bring a background response whose run stopped early to a state that is true.

Two cases, two rules:
- A replica shut down with the work still running (`requeue_or_fail_in`). It stored every
  event the turn had made before giving the work up, so the log is everything any client
  can hold. If that is no output yet (only `response.created`, `response.queued` and
  `response.in_progress`), the work goes back to the queue and any replica runs it from
  its stored request (at most `MAX_ATTEMPTS` times); otherwise it ends `failed`.
- A replica's lease lapsed: the process died (kill -9, a lost machine) (`fail_lapsed_in`).
  The response ends `failed`, whatever its log holds. Events reach clients before they
  are stored (the creating client's stream, and `NOTIFY` to followers), so the log of a
  process that died may lack events that clients already hold; no one can tell whether a
  run with no stored output had sent any. A second run would put different text under
  the same sequence numbers, and would call its tools twice. Failing it is the one
  outcome that is the same however the crash fell between a send and a write.
In both, a cancel that was asked for wins: the response ends `cancelled`. Every ending
appends its terminal event to the log, so every stream of the response ends with one:
`response.failed`, or for a cancel `response.incomplete` with status `cancelled` (the
SDK's stream events have no cancel event; `response.cancelled` is a webhook event only).
The output so far is kept, folded from the log.
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


def cancelled_event(seq: int, response: dict[str, Any]) -> dict[str, Any]:
    """The terminal event of a cancelled response (see the module docstring)."""
    return {"type": "response.incomplete", "sequence_number": seq, "response": response}


async def end_cancelled_in(
    conn: AsyncConnection, response_id: str, serialize: Serialize
) -> tuple[int, bytes] | None:
    """End the response `cancelled` with the output its log holds; append its terminal
    event."""
    response = await _stored_response(conn, response_id)
    if response is None:
        await end_job_in(conn, response_id)
        return None
    response.update(status="cancelled", output=fold_output(await frames_in(conn, response_id)))
    await _save(conn, response)
    seq = await last_seq_in(conn, response_id) + 1
    frame = (seq, serialize(cancelled_event(seq, response)))
    await insert_events_in(conn, response_id, [frame])
    await end_job_in(conn, response_id)
    return frame


async def requeue_or_fail_in(
    conn: AsyncConnection, job: dict[str, Any], serialize: Serialize, why: str
) -> tuple[int, bytes] | None:
    """Settle a run this replica stopped at shutdown; `job` is its locked row, and every
    event the run made is stored."""
    response_id = job["response_id"]
    if job["cancel_requested"]:
        return await end_cancelled_in(conn, response_id, serialize)
    last = await last_seq_in(conn, response_id)
    if last <= NO_OUTPUT_THROUGH and job["attempts"] < MAX_ATTEMPTS:
        await requeue_in(conn, response_id, keep_through=1)
        return None
    if last <= NO_OUTPUT_THROUGH:
        why += f" It was started {job['attempts']} times without success."
    else:
        why += " It had already streamed output, so it was not run again."
    return await end_failed_in(conn, response_id, serialize, why)


async def fail_lapsed_in(
    conn: AsyncConnection, job: dict[str, Any], serialize: Serialize, why: str
) -> tuple[int, bytes] | None:
    """Settle a run whose replica's lease lapsed; `job` is its locked row."""
    if job["cancel_requested"]:
        return await end_cancelled_in(conn, job["response_id"], serialize)
    why += " It was not run again: clients may already hold events that were not stored."
    return await end_failed_in(conn, job["response_id"], serialize, why)
