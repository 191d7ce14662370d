"""Write a background response's events to the database in batches, off the stream.

The turn hands each serialized event to `add` (a list append); a writer task stores what
has gathered in one INSERT, then waits `interval` before the next, so a fast stream costs
one write per interval rather than one per delta, and a slow one is stored within about
`interval` of each event (the first after a pause at once). Each batch is first published
(`on_batch`, for followers in this process, and a PostgreSQL NOTIFY carrying the frames for
the other replicas), then stored, so followers anywhere get events without waiting for the
write. `take_rest` stops the writer and hands back what it had not yet stored, for the
turn's final transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from loom.store.background import BackgroundStore, Frame

log = logging.getLogger("loom.engine")


class EventLogWriter:
    def __init__(
        self,
        store: BackgroundStore,
        response_id: str,
        interval: float,
        on_batch: Callable[[int, list[bytes]], None],
    ) -> None:
        self._store = store
        self._id = response_id
        self._interval = interval
        self._on_batch = on_batch
        self._pending: list[Frame] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.writes = 0  # how many batches were stored (the benchmark reads it)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    def add(self, seq: int, frame: bytes) -> None:
        self._pending.append((seq, frame))
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                batch, self._pending = self._pending, []
                if batch:
                    sent = await self._publish(batch)
                    try:
                        # Other replicas had the frames from the NOTIFY; else they read them.
                        await self._store.append(self._id, batch, notify=not sent)
                        self.writes += 1
                    except Exception as exc:  # kept; retried with the next batch
                        log.warning("storing events of %s failed: %s", self._id, exc)
                        self._pending[:0] = batch
            await asyncio.sleep(self._interval)
            if self._pending:
                self._wake.set()

    async def _publish(self, batch: list[Frame]) -> bool:
        self._on_batch(batch[0][0], [frame for _, frame in batch])
        try:
            return await self._store.publish(self._id, batch)
        except Exception as exc:  # the log's notification covers it
            log.warning("publishing events of %s failed: %s", self._id, exc)
            return False

    async def take_rest(self) -> list[Frame]:
        """Stop writing (waiting out a write in progress); return the frames not stored."""
        async with self._lock:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None
            rest, self._pending = self._pending, []
        return rest
