"""The event log writer: followers get events by NOTIFY while a slow write is still on
its way, and what was not stored comes back for the turn's final transaction.

A unit test of one module: the store is a stand-in whose writes block until released."""

from __future__ import annotations

import asyncio

from loom.engine.event_log import EventLogWriter


class SlowStore:
    """`append` waits until `release` is set; `publish` records what it sent."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.writing = asyncio.Event()
        self.sent = asyncio.Event()
        self.published: list[list[int]] = []
        self.appended: list[list[int]] = []

    async def publish(self, response_id: str, frames: list[tuple[int, bytes]]) -> bool:
        self.published.append([seq for seq, _ in frames])
        self.sent.set()
        return True

    async def append(self, response_id: str, frames, notify: bool = True) -> None:
        self.writing.set()
        await self.release.wait()
        self.appended.append([seq for seq, _ in frames])


async def _let_tasks_run(turns: int) -> None:
    """Let the event loop run `turns` rounds of whatever is ready (no time passes)."""
    loop = asyncio.get_running_loop()
    for _ in range(turns):
        turn = loop.create_future()
        loop.call_soon(turn.set_result, None)
        await turn


async def test_publishing_does_not_wait_for_a_slow_write():
    store = SlowStore()
    local: list[tuple[int, int]] = []
    writer = EventLogWriter(store, "resp_x", 0.0, lambda first, f: local.append((first, len(f))))
    writer.start()
    writer.add(3, b"three")
    await asyncio.wait_for(store.writing.wait(), 10)  # the first write is stuck
    store.sent.clear()
    writer.add(4, b"four")
    writer.add(5, b"five")
    await asyncio.wait_for(store.sent.wait(), 10)
    assert store.published[-1] == [4, 5] and store.appended == []
    assert local[-1] == (4, 2)  # followers in this process had them too
    store.release.set()
    rest = await writer.take_rest()  # waits out the write in progress
    assert store.appended[0] == [3]
    assert sorted(seq for batch in store.appended[1:] for seq in batch) + [
        seq for seq, _ in rest
    ] == [4, 5]


async def test_a_held_writer_gathers_until_released():
    """While held (a stream's first token is on its way) nothing is published or stored;
    on release what gathered goes out together."""
    store = SlowStore()
    store.release.set()
    local: list[tuple[int, int]] = []
    writer = EventLogWriter(store, "resp_x", 0.0, lambda first, f: local.append((first, len(f))))
    writer.hold()
    writer.start()
    writer.add(2, b"two")
    writer.add(3, b"three")
    await _let_tasks_run(20)  # every chance the writer's tasks could want
    assert store.published == [] and store.appended == [] and local == []
    writer.release()
    await asyncio.wait_for(store.sent.wait(), 10)
    assert store.published == [[2, 3]] and local == [(2, 2)]
    rest = await writer.take_rest()
    assert [seq for batch in store.appended for seq in batch] + [s for s, _ in rest] == [2, 3]
