"""Let first tokens pass the rest of streams that are already buffered.

With a fast upstream a turn's whole answer is often already read when its first delta has
gone out, and the turn runner would turn all of it into events in one go. Under load the
event loop then spends each of its iterations on hundreds of such bursts, and a new
request, which needs about three iterations to reach its first token (its request read,
the upstream's answer, the first write), waits behind all of them: at 512 streams the
first token took 40% of the whole response time. So a turn past its first delta goes on
in slices: after each slice it takes a place in this queue, and each loop iteration lets
only `per_iteration` slices go on, in the order they asked. Iterations stay short, what a
new request needs runs in each of them, and the slices still keep the CPU busy, so
throughput is unchanged. When few turns run, the queue is empty and a slice waits one
iteration, a few microseconds.
"""

from __future__ import annotations

import asyncio
from collections import deque


class SliceQueue:
    def __init__(self, per_iteration: int) -> None:
        self.per_iteration = per_iteration
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._releasing = False

    def wait(self) -> asyncio.Future[None]:
        """A future done when this slice's turn comes (at the soonest, next iteration)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append(future)
        if not self._releasing:
            self._releasing = True
            loop.call_soon(self._release, loop)
        return future

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting
        released = 0
        while waiting and released < self.per_iteration:
            future = waiting.popleft()
            if not future.done():  # a cancelled waiter gives its place up
                future.set_result(None)
                released += 1
        if waiting:  # a callback scheduled from a callback runs in the next iteration
            loop.call_soon(self._release, loop)
        else:
            self._releasing = False
