"""Wake the streams that follow a background response when its stored events grow.

A follower asks for a waiter *before* it reads the event log, then waits on it; whoever
appends events (the local event writer, or a PostgreSQL notification from another
replica) wakes every waiter of that response. A wake-up between the read and the wait is
therefore never lost. Waiters are one-shot.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class EventHub:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, list[asyncio.Event]] = defaultdict(list)

    def waiter(self, response_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[response_id].append(event)
        return event

    def forget(self, response_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(response_id)
        if waiters and event in waiters:
            waiters.remove(event)
            if not waiters:
                del self._waiters[response_id]

    def wake(self, response_id: str) -> None:
        for event in self._waiters.pop(response_id, ()):
            event.set()
