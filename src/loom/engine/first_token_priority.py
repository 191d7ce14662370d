"""Turns past their first token keep the event loop's passes short for those before it.

asyncio runs every ready callback in each pass of its loop. A turn whose upstream answer
is already buffered runs its remaining events in one go, and a SQLite group commit ends
dozens of turns at once, so at hundreds of streams a pass grows to tens or hundreds of
milliseconds; a new request, which needs several passes before its first token leaves
(its task starts, its turn starts, the upstream's answer is read, the frame is sent),
waits that long for each. `Pacer` bounds the work that turns past their first token do in
one pass: once they have spent `budget` seconds of it, each parks at its next event (the
turn runner also asks after a turn's save), and the parked ones resume oldest first,
`per_pass` of them each pass, each with the pass's fresh budget. Work before a first
token never parks. With CPU to spare, passes are short and nothing parks; under load, new
requests keep a short time to first token, and the turns already streaming share the rest
of the CPU.

The check between events is a clock read; parking costs a future and one callback a pass
while anything is parked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from time import perf_counter


class Pacer:
    def __init__(
        self,
        budget: float = 0.004,
        per_pass: int = 8,
        clock: Callable[[], float] = perf_counter,
    ) -> None:
        self.budget = budget
        self.per_pass = per_pass
        self._clock = clock
        self._window_end = 0.0  # 0: the next event opens this pass's window
        self._parked: deque[asyncio.Future[None]] = deque()
        self._pumping = False
        self.parks = 0  # how often a stream has parked, for tests and curiosity

    def spent(self) -> bool:
        """Whether this pass's budget for streams past their first token is used up."""
        if not self._window_end:
            self._window_end = self._clock() + self.budget
            return False
        return self._clock() > self._window_end

    async def park(self) -> None:
        """Wait for a later pass, behind the streams parked before."""
        future = asyncio.get_running_loop().create_future()
        self._parked.append(future)
        self.parks += 1
        if not self._pumping:
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._next_pass)
        await future

    def _next_pass(self) -> None:
        """Open a fresh window and let the oldest parked streams go on in the next pass.
        It schedules itself first, so in that pass it runs before them and their window
        is fresh."""
        self._window_end = 0.0
        parked = self._parked
        if not parked:
            self._pumping = False
            return
        asyncio.get_running_loop().call_soon(self._next_pass)
        woken = 0
        while parked and woken < self.per_pass:
            future = parked.popleft()
            if not future.done():  # a cancelled stream is skipped
                future.set_result(None)
                woken += 1
