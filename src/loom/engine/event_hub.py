"""Hand a background response's new events to the streams that follow it in this process.

A follower subscribes *before* it reads the event log, so nothing that happens between
its read and its wait is missed. Two kinds of news arrive:
- `publish(id, first_seq, frames)`: events as they are made (from the local run, or from
  another replica's `NOTIFY`, which carries them when they fit), before they are stored;
- `wake(id)`: "read the log": it grew, or the response ended.
A follower takes published frames that continue where it is, and reads the log whenever
there is a gap, so frames lost on the way only cost a read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator

# None: read the log. (first sequence number, frames): events, in order, from there.
News = tuple[int, list[bytes]] | None


class Subscription:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[News] = asyncio.Queue()

    def put(self, news: News) -> None:
        self._queue.put_nowait(news)

    async def next(self, timeout: float) -> News:
        """The next piece of news; None also when `timeout` passes without any."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


class EventHub:
    def __init__(self) -> None:
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)

    @contextlib.contextmanager
    def subscribe(self, response_id: str) -> Iterator[Subscription]:
        sub = Subscription()
        self._subs[response_id].add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(response_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[response_id]

    def has_followers(self, response_id: str) -> bool:
        return response_id in self._subs

    def wake(self, response_id: str) -> None:
        for sub in self._subs.get(response_id, ()):
            sub.put(None)

    def publish(self, response_id: str, first_seq: int, frames: list[bytes]) -> None:
        for sub in self._subs.get(response_id, ()):
            sub.put((first_seq, frames))
