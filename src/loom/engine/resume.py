"""Read a background response as it stands, on any replica: its state, and its stream.

`follow` replays the stored events after a sequence number, then waits for more (woken
by the `EventHub`, which local writes and other replicas' notifications feed, with a
timer as a backstop) until the terminal event, or until the job is done (a response
deleted while it ran ends without one). A reader can be past the end of the log: the
client that created a response gets its events live, before they are stored, and if that
replica died the log may lack its last few. Such a reader gets the terminal event that
ended the response (`response.failed`, or a cancel's `response.incomplete`), numbered
right after the last event it has, so its stream stays gap-free.
`current` is the stored response with the state of its job and, while it runs, the
output folded from its events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from loom.engine.event_fold import fold_output, frame_event, is_terminal
from loom.engine.event_hub import EventHub
from loom.store.background import BackgroundStore

BATCH = 1000
BACKSTOP = 1.0  # seconds: re-read even without a wake-up (a notification can be lost)


class _Cursor:
    """Where a follower is, and the frames it holds beyond a gap, by sequence number."""

    def __init__(self, after: int) -> None:
        self.at = after
        self.held: dict[int, bytes] = {}

    def add(self, first: int, frames: list[bytes]) -> None:
        for offset, frame in enumerate(frames):
            if first + offset > self.at:
                self.held[first + offset] = frame

    def take(self) -> list[bytes]:
        """The held frames that continue from the cursor, in order."""
        out = []
        while (frame := self.held.pop(self.at + 1, None)) is not None:
            out.append(frame)
            self.at += 1
        return out


async def follow(
    store: BackgroundStore,
    hub: EventHub,
    serialize: Callable[[dict[str, Any]], bytes],
    owner: str,
    response_id: str,
    after: int,
    poll_interval: float = BACKSTOP,
) -> AsyncIterator[bytes]:
    cursor = _Cursor(after)
    with hub.subscribe(response_id) as news:
        while True:
            rows = await store.events_after(response_id, cursor.at, BATCH)
            for seq, frame in rows:
                cursor.held.setdefault(seq, frame)
            out = cursor.take()
            if out:
                yield b"".join(out)
                if is_terminal(out[-1]):
                    return
                if len(rows) == BATCH:
                    continue
            elif not rows:
                # Nothing new: has it ended (a response deleted while it ran has no terminal)?
                # The job is read before the log, so its last events cannot be missed.
                job = await store.job(owner, response_id)
                if job is None or job["state"] == "done":
                    rows = await store.events_after(response_id, cursor.at, 100_000)
                    if rows:
                        yield b"".join(frame for _, frame in rows)
                    else:
                        last = await store.last_event(response_id)
                        if last is not None and last[0] <= cursor.at and is_terminal(last[1]):
                            end = {**frame_event(last[1]), "sequence_number": cursor.at + 1}
                            yield serialize(end)
                    return
            # Follow published events while they continue where this stream is; read the
            # log on a wake-up, on a gap (stored by now, or soon), or after `poll_interval`
            # without news.
            while (item := await news.next(poll_interval)) is not None:
                cursor.add(*item)
                out = cursor.take()
                if out:
                    yield b"".join(out)
                    if is_terminal(out[-1]):
                        return
                if cursor.held:
                    break


async def current(store: BackgroundStore, owner: str, response: dict[str, Any]) -> dict[str, Any]:
    """The response as it stands: a running one shows its output so far."""
    if not response.get("background") or response["status"] not in ("queued", "in_progress"):
        return response
    job = await store.job(owner, response["id"])
    if job is None or job["state"] == "queued":
        return response
    if job["state"] == "done":  # ended between the two reads: the caller reads again
        return response
    frames = [frame for _, frame in await store.events_after(response["id"], -1, 100_000)]
    return {**response, "status": "in_progress", "output": fold_output(frames)}


async def wait_done(
    store: BackgroundStore, hub: EventHub, owner: str, response_id: str, timeout: float
) -> bool:
    """Wait until the response's job is done (its replica acted on a cancel)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with hub.subscribe(response_id) as news:
        while True:
            job = await store.job(owner, response_id)
            if job is None or job["state"] == "done":
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await news.next(min(left, BACKSTOP))
