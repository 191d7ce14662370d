"""Run a turn to its end whatever the client does, and save it before announcing the end.

A streamed turn runs in its own task and hands serialized events to the HTTP response
through a queue, so a client that disconnects stops only the reading side: the turn is
finished and stored whole. The final state is persisted *before* the terminal event is
sent, so a client that reacts to `response.completed` always finds the response stored.
`turn_saver` is that save: what is stored, and what becomes of the response when it cannot
be. The API layer passes in only how an event is framed on the wire. A turn not streamed
runs in a task too, so it is also stored whatever its caller does; at shutdown, turns still
running after the grace period are stopped and stored `failed`.

Admission lives here too, since the runner is what knows when a turn ends: past
`max_in_flight` turns running in this process, `admit` refuses a new one at once with a
429 and `Retry-After` (nothing queues), so the turns already admitted keep their pace.
Past its first token, a streamed turn yields to those before theirs (`first_token_priority`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from loom.engine.events import Event
from loom.engine.first_token_priority import Pacer
from loom.engine.turn_setup import PreparedTurn
from loom.errors import RateLimitError
from loom.store import DuplicateIdError, Stores

log = logging.getLogger("loom.engine")

Persist = Callable[[dict[str, Any]], Awaitable[None]]
Serialize = Callable[[Event], bytes]
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_END = object()


def _mark_unsaved(response: dict[str, Any], why: str) -> None:
    response.update(
        status="failed",
        completed_at=None,
        incomplete_details=None,
        error={
            "code": "server_error",
            "message": f"The turn could not be stored{why}. The conversation was left unchanged.",
        },
    )


def turn_saver(stores: Stores, owner: str, prepared: PreparedTurn, store: bool) -> Persist:
    """Save the turn: the response (unless `store` is false) and, on a conversation, the
    turn's items, in one transaction. If that save fails, for any reason, the response
    becomes `failed` and says why (a database error's text is logged, not shown; a turn that
    had failed already keeps its own error), and the failed response alone is saved if it
    can be: the client never sees `completed` for a turn that was not kept."""
    conversation_id = prepared.conversation_id

    async def persist(response: dict[str, Any]) -> None:
        ok = response["status"] != "failed"
        # A failed turn leaves the conversation untouched.
        items = prepared.input_items + response["output"] if ok and conversation_id else []
        try:
            if store:
                await stores.responses.save_turn(
                    owner,
                    response,
                    prepared.input_items,
                    conversation_id=conversation_id,
                    conversation_items=items if conversation_id else None,
                )
            elif items and not await stores.conversations.append_items(
                owner, conversation_id, items
            ):
                raise LookupError(f"conversation {conversation_id!r} not found")
        except (LookupError, DuplicateIdError) as exc:
            log.warning("response %s could not be stored: %s", response["id"], exc)
            why = f": {exc}"
        except Exception:
            log.exception("response %s could not be stored", response["id"])
            why = ""
        else:
            return
        if ok:  # a turn that already failed keeps the error that failed it
            _mark_unsaved(response, why)
        if store:  # may fail again (the database is down): the runner logs it
            await stores.responses.save_turn(owner, response, prepared.input_items)

    return persist


async def _persist_terminal(event: Event, persist: Persist) -> None:
    """Persist the final Response; if saving turned it into a failure, say so on the wire.
    Whatever the save raises, the event still goes out, as `response.failed` if need be."""
    response = event["response"]
    try:
        await persist(response)
    except Exception:
        log.exception("response %s: saving the turn failed", response["id"])
        if response["status"] != "failed":
            _mark_unsaved(response, "")
    if response["status"] == "failed":
        event["type"] = "response.failed"


def _failed_after(first: Event, last: Event, message: str | None = None) -> Event:
    """The `response.failed` that ends a stream whose events broke off after `last`, built
    from the Response that `first` (response.created) carried."""
    response = {**first["response"], "output": []}
    _mark_unsaved(response, " because the server failed while running it")
    if message is not None:
        response["error"] = {"code": "server_error", "message": message}
    return {
        "type": "response.failed",
        "sequence_number": last["sequence_number"] + 1,
        "response": response,
    }


SHUTDOWN = (
    "The Loom process running this response shut down before it ended (the shutdown grace "
    "period ran out)."
)


def _same(event: Event) -> Event:
    return event


class LastFrame(bytes):
    """The last bytes of a stream (possibly empty): nothing follows them."""


class Admission:
    """One admitted turn's place among the turns in flight; `release` gives it back (once,
    however often it is called)."""

    __slots__ = ("_runner",)

    def __init__(self, runner: TurnRunner | None) -> None:
        self._runner = runner

    def release(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.in_flight -= 1


class TurnRunner:
    def __init__(self, max_in_flight: int = 0, pacer: Pacer | None = None) -> None:
        self.pacer = pacer or Pacer()
        self._tasks: set[asyncio.Task] = set()
        self._waiting: set[asyncio.Task] = set()  # turns awaiting their next event
        self._stopping = False
        self.max_in_flight = max_in_flight  # 0: no limit
        self.in_flight = 0  # admitted turns that have not ended yet

    def admit(self) -> Admission:
        """Take a place for a new turn, or raise a 429 at once when none is left. The
        runner gives the place back when the turn it is passed to ends; whoever admitted
        a turn that never reaches the runner releases it."""
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            raise RateLimitError(
                f"This server is at its limit of {self.max_in_flight} responses in progress. "
                "Retry shortly.",
                retry_after=1,
            )
        self.in_flight += 1
        return Admission(self)

    async def run(
        self, events: AsyncIterator[Event], persist: Persist, admission: Admission | None = None
    ) -> dict[str, Any]:
        """Run a turn to its end in a task of its own (so it is stored even if the caller
        goes away, and stopped cleanly at shutdown); return the final Response."""
        first, queue = await self._start(events, persist, _same, admission)
        final = first
        while (item := await queue.get()) is not _END:
            final = item
        return final["response"]

    async def stream(
        self,
        events: AsyncIterator[Event],
        persist: Persist,
        serialize: Serialize,
        admission: Admission | None = None,
    ) -> AsyncIterator[bytes]:
        """Start the turn in a background task; `serialize` frames each event for the wire.
        Waits for the first event, so an error before the stream starts is raised here,
        where it can still become an HTTP error."""
        first, queue = await self._start(events, persist, serialize, admission)
        return self._drain(first, queue)

    async def frames(
        self,
        events: AsyncIterator[Event],
        persist: Persist,
        serialize: Callable[[Event], Any],
        admission: Admission | None = None,
    ) -> AsyncIterator[Any]:
        """Like `stream`, but one frame per event, never joined: a WebSocket sends each
        event as a message of its own."""
        first, queue = await self._start(events, persist, serialize, admission)
        return self._each(first, queue)

    async def _start(
        self,
        events: AsyncIterator[Event],
        persist: Persist,
        serialize: Callable[[Event], Any],
        admission: Admission | None,
    ) -> tuple[Any, asyncio.Queue]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.create_task(self._produce(events, persist, serialize, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if admission is not None:  # the place is held until the turn has ended, stored
            task.add_done_callback(lambda _: admission.release())
        first = await queue.get()
        if isinstance(first, BaseException):
            raise first
        return first, queue

    @staticmethod
    async def _each(first: Any, queue: asyncio.Queue) -> AsyncIterator[Any]:
        yield first
        while (item := await queue.get()) is not _END:
            yield item

    async def _produce(
        self,
        events: AsyncIterator[Event],
        persist: Persist,
        serialize: Serialize,
        queue: asyncio.Queue,
    ):
        """Run the turn, queueing each serialized event. An error before the first event is
        queued as is, for `stream` to raise; after it, the stream still ends with exactly
        one terminal event, whatever failed. At shutdown (`aclose`) a turn still waiting
        for its next event is stopped, and ends `failed`, stored as such. Past its first
        delta, the turn parks whenever the pacer's budget for this pass is spent."""
        first: Event | None = None
        last: Event | None = None  # the one piece of bookkeeping per event
        ended = False
        flushed = False  # whether the first delta has been let out
        task = asyncio.current_task()
        assert task is not None
        pacer = self.pacer
        turn = aiter(events)
        try:
            while True:
                self._waiting.add(task)  # only here may `aclose` stop it: never mid-save
                try:
                    event = await anext(turn)
                except StopAsyncIteration:
                    break
                finally:
                    self._waiting.discard(task)
                if event["type"] in TERMINAL:
                    await _persist_terminal(event, persist)
                    ended = True
                    if pacer.spent():  # the save may release many turns at once
                        await pacer.park()
                queue.put_nowait(serialize(event))
                first = first or event
                last = event
                if flushed:
                    if not ended and pacer.spent():
                        await pacer.park()
                elif event["type"].endswith(".delta"):
                    # When the upstream's answer is already all buffered, this loop would
                    # run the whole turn before the reader could send a byte: let the
                    # first token go out now, once per turn.
                    flushed = True
                    await asyncio.sleep(0)
            if not ended:
                raise RuntimeError("a turn ended without a terminal event")
        except asyncio.CancelledError as exc:
            if not self._stopping or ended:
                raise
            if first is None or last is None:
                queue.put_nowait(exc)
                return
            log.warning("response %s stopped at shutdown", first["response"]["id"])
            failed = _failed_after(first, last, SHUTDOWN)
            await _persist_terminal(failed, persist)
            queue.put_nowait(serialize(failed))
        except Exception as exc:
            if first is None or last is None:
                queue.put_nowait(exc)
            elif ended:
                log.error("turn failed after its terminal event: %r", exc, exc_info=exc)
            else:
                log.error("turn failed after its stream started: %r", exc, exc_info=exc)
                failed = _failed_after(first, last)
                await _persist_terminal(failed, persist)
                queue.put_nowait(serialize(failed))
        finally:
            queue.put_nowait(_END)

    @staticmethod
    async def _drain(first: bytes, queue: asyncio.Queue) -> AsyncIterator[bytes]:
        """Send events as they come; events already waiting go out together in one write
        (each event stays whole), which saves a socket write per event under load. The
        last write is a `LastFrame`, so the HTTP layer can end the body with it."""
        batch = [first]
        while True:
            while not queue.empty():
                batch.append(queue.get_nowait())
            ended = False
            for i, item in enumerate(batch):
                if item is _END:
                    batch, ended = batch[:i], True
                    break
            if ended:
                yield LastFrame(b"".join(batch))
                return
            if batch:
                yield b"".join(batch)
            batch = [await queue.get()]

    async def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the turns running now have finished (and been stored); whether they
        did within `timeout`."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        return not self._tasks

    async def aclose(self, timeout: float = 30.0) -> None:
        """Let running turns finish (and be stored) within `timeout`; then stop those
        still waiting on their model or tools: each ends `failed`, stored as such."""
        if await self.wait_idle(timeout):
            return
        self._stopping = True
        for task in list(self._waiting):
            task.cancel()
        if not await self.wait_idle(10):
            log.warning("%d turns were still running at exit", len(self._tasks))
