"""The slice queue: at most `per_iteration` waiters go on per event loop iteration, in the
order they asked, and a cancelled waiter gives its place up."""

from __future__ import annotations

import asyncio

from loom.engine.slices import SliceQueue


async def test_each_iteration_lets_only_so_many_slices_go_on_in_order():
    queue = SliceQueue(per_iteration=2)
    waiters = [queue.wait() for _ in range(5)]
    done_after: list[list[int]] = []
    for _ in range(3):
        await asyncio.sleep(0)  # one loop iteration: the release callback runs before us
        done_after.append([i for i, w in enumerate(waiters) if w.done()])
    assert done_after == [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4]]


async def test_a_cancelled_waiter_gives_its_place_up():
    queue = SliceQueue(per_iteration=1)
    first, second, third = queue.wait(), queue.wait(), queue.wait()
    first.cancel()
    await asyncio.sleep(0)
    assert second.done() and not third.done()
    await asyncio.sleep(0)
    assert third.done()


async def test_the_queue_goes_idle_and_starts_again():
    queue = SliceQueue(per_iteration=4)
    await queue.wait()
    await asyncio.sleep(0)  # the release callback has nothing left: it stops
    await asyncio.wait_for(queue.wait(), timeout=5)  # a new waiter starts it again
