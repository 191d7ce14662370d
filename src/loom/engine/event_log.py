"""Write a background response's events to the database in batches, off the stream.

The turn hands each serialized event to `add` (a list append). Two tasks take it from
there, so that neither waits for the other:
- the publisher hands new events to followers as soon as it is free: `on_batch` (for
  followers in this process) and a PostgreSQL NOTIFY carrying the frames (for the other
  replicas). Events that come while a NOTIFY is on its way go together in the next one;
- the storer stores what has gathered in one INSERT, then waits `interval` before the
  next, so a fast stream costs one write per interval rather than one per delta, and a
  slow one is stored within about `interval` of each event (the first after a pause at
  once).
A follower on another replica thus gets an event one NOTIFY after it is made, however
long the writes take; one that finds a gap (it joined between a NOTIFY and the write of
its events) reads the log, which the next write wakes it for. `take_rest` stops both and
hands back what was not yet stored, for the turn's final transaction.

`hold` keeps both tasks asleep until `release`: while a stream's first token is on its
way, their database work would only delay it (see `background.LocalRun`).
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
        self._pending: list[Frame] = []  # not stored yet
        self._unpublished: list[Frame] = []
        self._store_wake = asyncio.Event()
        self._publish_wake = asyncio.Event()
        self._lock = asyncio.Lock()  # held while a batch is being stored
        self._storer: asyncio.Task | None = None
        self._publisher: asyncio.Task | None = None
        self._closing = False
        self._unsent = False  # some frames went by no NOTIFY: the next write wakes followers
        self._held = False
        self.writes = 0  # how many batches were stored (the benchmark reads it)

    def start(self) -> None:
        self._storer = asyncio.create_task(self._store_loop())
        self._publisher = asyncio.create_task(self._publish_loop())

    def add(self, seq: int, frame: bytes) -> None:
        self._pending.append((seq, frame))
        self._unpublished.append((seq, frame))
        if not self._held:
            self._store_wake.set()
            self._publish_wake.set()

    def hold(self) -> None:
        """Gather new frames without waking the tasks, until `release`."""
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            if self._pending or self._unpublished:
                self._store_wake.set()
                self._publish_wake.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            if self._closing:  # what is left goes with the final transaction
                return
            batch, self._unpublished = self._unpublished, []
            if batch:
                self._on_batch(batch[0][0], [frame for _, frame in batch])
                try:
                    sent = await self._store.publish(self._id, batch)
                except Exception as exc:
                    log.warning("publishing events of %s failed: %s", self._id, exc)
                    sent = False
                if not sent:  # too large for a NOTIFY, or SQLite: the write wakes them
                    self._unsent = True
                    self._store_wake.set()

    async def _store_loop(self) -> None:
        while True:
            await self._store_wake.wait()
            self._store_wake.clear()
            async with self._lock:
                batch, self._pending = self._pending, []
                if batch or self._unsent:
                    notify, self._unsent = self._unsent, False
                    try:
                        await self._store.append(self._id, batch, notify=notify)
                        self.writes += 1
                    except Exception as exc:  # kept; retried with the next batch
                        log.warning("storing events of %s failed: %s", self._id, exc)
                        self._pending[:0] = batch
                        self._unsent = self._unsent or notify
            await asyncio.sleep(self._interval)
            if self._pending:
                self._store_wake.set()

    async def take_rest(self) -> list[Frame]:
        """Stop writing (waiting out a write in progress); return the frames not stored."""
        self._closing = True
        self._publish_wake.set()
        if self._publisher is not None:  # ends after the NOTIFY it may be sending
            await self._publisher
        async with self._lock:  # the storer is between writes: it can be cancelled
            if self._storer is not None:
                self._storer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._storer
            rest, self._pending = self._pending, []
        return rest
