"""This process's part in sharing background work with other Loom processes.

Every third of the lease it renews the leases of the runs it holds (learning of cancels
it missed), claims queued work, and settles work whose replica stopped renewing: see
`settle.py`. On PostgreSQL it also listens for notifications, so events, cancels and new
work reach it at once instead of at the next tick. On SQLite there is only one process,
so at start-up everything still `running` belonged to a process that is gone, and is
settled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from loom.engine.background import BackgroundRunner
from loom.engine.settle import fail_lapsed_in
from loom.store.background import (
    CANCEL_CHANNEL,
    EVENTS_CHANNEL,
    JOBS_CHANNEL,
    LIVE_CHANNEL,
    lock_job_in,
    parse_live_payload,
)
from loom.store.notifications import PgListener

log = logging.getLogger("loom.engine")

MAX_LOCAL_RUNS = 256


class Replica:
    def __init__(self, runner: BackgroundRunner, db_url: str) -> None:
        self.runner = runner
        self.stores = runner.stores
        self.settings = runner.settings
        self.hub = runner.hub
        self.id = runner.replica_id
        self._db_url = db_url
        self._listener: PgListener | None = None
        self._task: asyncio.Task | None = None
        self._poke = asyncio.Event()
        self.draining = False

    @property
    def period(self) -> float:
        return max(0.05, self.settings.lease_seconds / 3)

    async def start(self) -> None:
        if self.stores.db.dialect_name == "postgresql" and self.settings.pg_notify:
            self._listener = PgListener(
                self._db_url,
                (EVENTS_CHANNEL, LIVE_CHANNEL, CANCEL_CHANNEL, JOBS_CHANNEL),
                self._on_notify,
            )
            self._listener.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listener.ready.wait(), timeout=10)
        if self.stores.db.dialect_name == "sqlite":
            await self.settle_lapsed(everyone=True)
        self._task = asyncio.create_task(self._maintain())

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == LIVE_CHANNEL:
            response_id, first_seq, frames = parse_live_payload(payload)
            if response_id not in self.runner.runs:  # local followers had them already
                self.hub.publish(response_id, first_seq, frames)
            return
        response_id = payload
        if channel == EVENTS_CHANNEL:
            self.hub.wake(response_id)
        elif channel == CANCEL_CHANNEL:
            self.runner.stop(response_id, "cancel")
        elif channel == JOBS_CHANNEL:
            self._poke.set()

    async def _maintain(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("background maintenance failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self.period)
            self._poke.clear()

    async def tick(self) -> None:
        background = self.stores.background
        local = list(self.runner.runs)
        for response_id in await background.heartbeat(self.id, local, self.settings.lease_seconds):
            self.runner.stop(response_id, "cancel")
        if not self.draining:
            room = MAX_LOCAL_RUNS - len(self.runner.runs)
            if room > 0:
                for job in await background.claim_queued(
                    self.id, self.settings.lease_seconds, room
                ):
                    await self.runner.run_claimed(job)
        await self.settle_lapsed(everyone=False)

    async def settle_lapsed(self, everyone: bool) -> None:
        for response_id in await self.stores.background.lapsed_ids(everyone):
            async with self.stores.db.write() as conn:
                job = await lock_job_in(conn, response_id)
                if job is None or job["state"] != "running":
                    continue
                if not everyone and (job["lease_expires_at"] or 0) >= time.time():
                    continue
                log.warning(
                    "response %s: the lease of replica %s lapsed; settling it",
                    response_id,
                    job["lease_owner"],
                )
                await fail_lapsed_in(
                    conn,
                    job,
                    self.runner.serialize,
                    "The Loom process running this response stopped before it ended.",
                )
            self.hub.wake(response_id)

    async def drain(self, grace: float) -> None:
        """Stop claiming work; let local runs end within `grace`; give back the rest."""
        self.draining = True
        await self.runner.drain(grace)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await self._listener.aclose()
