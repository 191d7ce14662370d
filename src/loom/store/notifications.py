"""Receive PostgreSQL notifications on one dedicated connection, reconnecting if it drops.

Other replicas `NOTIFY` when a background response's events grow, when one is cancelled,
and when work is queued. This listener hands each (channel, payload) to a callback on the
event loop. Notifications are a fast path only: everything they announce is also in the
tables, which the replicas re-read on a timer, so one lost while reconnecting is late,
never missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger("loom.store")

Callback = Callable[[str, str], None]


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PgListener:
    def __init__(self, url: str, channels: tuple[str, ...], callback: Callback) -> None:
        self._dsn = asyncpg_dsn(url)
        self._channels = channels
        self._callback = callback
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def _on_notify(self, _conn, _pid, channel: str, payload: str) -> None:
        self._callback(channel, payload)

    async def _run(self) -> None:
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self._channels:
                    await conn.add_listener(channel, self._on_notify)
                self.ready.set()
                await lost.wait()
                log.warning("notification connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("cannot listen for notifications (%s); retrying", exc)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
