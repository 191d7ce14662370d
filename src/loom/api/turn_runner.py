"""Run a turn to its end whatever the client does, and save it before announcing the end.

A streamed turn runs in its own task and hands serialized events to the HTTP response
through a queue, so a client that disconnects stops only the reading side: the turn is
finished and stored whole. The final state is persisted *before* the terminal event is
sent, so a client that reacts to `response.completed` always finds the response stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from loom.api.sse import typed_event_bytes
from loom.engine.events import Event
from loom.observability.turns import TurnObservation

log = logging.getLogger("loom.engine")

Persist = Callable[[dict[str, Any]], Awaitable[None]]
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_END = object()


async def _persist_terminal(event: Event, persist: Persist) -> None:
    """Persist the final Response; if saving turned it into a failure, say so on the wire."""
    await persist(event["response"])
    if event["response"]["status"] == "failed":
        event["type"] = "response.failed"


class TurnRunner:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    async def run(
        self, events: AsyncIterator[Event], persist: Persist, observed: TurnObservation
    ) -> dict[str, Any]:
        """Consume a turn in the caller's task; return the final Response."""
        try:
            async for event in events:
                if event["type"] in TERMINAL:
                    await _persist_terminal(event, persist)
                    observed.finished(event["response"])
                    return event["response"]
            raise RuntimeError("a turn ended without a terminal event")
        finally:
            observed.refused(RuntimeError("the turn did not finish"))  # no-op once finished

    async def stream(
        self, events: AsyncIterator[Event], persist: Persist, observed: TurnObservation
    ) -> AsyncIterator[bytes]:
        """Start the turn in a background task. Waits for its first event, so an error
        before the stream starts is raised here, where it can still become an HTTP error."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.create_task(self._produce(events, persist, queue, observed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        first = await queue.get()
        if isinstance(first, BaseException):
            raise first
        return self._drain(first, queue)

    @staticmethod
    async def _produce(
        events: AsyncIterator[Event],
        persist: Persist,
        queue: asyncio.Queue,
        observed: TurnObservation,
    ):
        try:
            async for event in events:
                if event["type"] in TERMINAL:
                    await _persist_terminal(event, persist)
                    observed.finished(event["response"])
                queue.put_nowait(typed_event_bytes(event))
        except Exception as exc:  # only reachable before the first event (see run_turn)
            observed.refused(exc)
            queue.put_nowait(exc)
        finally:
            observed.refused(RuntimeError("the turn did not finish"))  # no-op once finished
            queue.put_nowait(_END)

    @staticmethod
    async def _drain(first: bytes, queue: asyncio.Queue) -> AsyncIterator[bytes]:
        """Send events as they come; events already waiting go out together in one write
        (each event stays whole), which saves a socket write per event under load."""
        yield first
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            ended = False
            for i, item in enumerate(batch):
                if item is _END or isinstance(item, BaseException):
                    if item is not _END:
                        log.error("turn failed after its stream started: %r", item)
                    batch, ended = batch[:i], True
                    break
            if batch:
                yield b"".join(batch)
            if ended:
                return

    async def aclose(self, timeout: float = 30.0) -> None:
        """Let running turns finish (and be stored) before the process exits."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
