"""Time limits on waiting for an upstream, at almost no cost per chunk.

A per-read `asyncio.timeout` would schedule and cancel a timer for every chunk. Instead,
the reader marks when it starts and stops waiting (a float and a task reference), and
one timer, re-armed only when it fires, checks whether the current wait has run past its
limit. If it has, it cancels the waiting task; the reader sees `expired` and turns the
cancellation into a timeout error. A wait is only ever open around an await on the
upstream, so the cancellation always lands there and never in the consumer's code.
"""

from __future__ import annotations

import asyncio
import math


class StallGuard:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._deadline = math.inf  # of the current wait; inf while not waiting
        self.expired = False

    def wait(self, limit: float) -> None:
        """The caller is about to await the upstream for at most `limit` seconds."""
        self._deadline = self._loop.time() + limit
        self._task = asyncio.current_task()
        if self._handle is None:
            self._handle = self._loop.call_at(self._deadline, self._check)

    def done(self) -> None:
        """The await returned."""
        self._deadline = math.inf

    def _check(self) -> None:
        self._handle = None
        if self._deadline == math.inf:
            return  # not waiting: the next wait() arms the timer again
        if self._loop.time() >= self._deadline:
            self.expired = True
            if self._task is not None:
                self._task.cancel()
        else:
            self._handle = self._loop.call_at(self._deadline, self._check)

    def absorb(self) -> None:
        """Called where the cancellation it caused was caught: the task goes on."""
        self._deadline = math.inf
        if self._task is not None:
            self._task.uncancel()

    def close(self) -> None:
        self._deadline = math.inf
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
