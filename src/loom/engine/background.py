"""Run background responses: to their end whether or not anyone listens, stored as they go.

A background response starts as a `queued` row with its job and its first two events
(`response.created`, `response.queued`). The replica that runs it streams the turn's
events into memory (for the client that created it with `stream: true`) and into an
`EventLogWriter` (for every other reader, on any replica). Its end is one transaction:
the job row is locked, and if a cancel was asked for meanwhile the response ends
`cancelled` with nothing appended to its conversation; otherwise the final response, the
conversation items, the last events and the terminal event commit together. Only then do
local readers see the terminal event (save, then announce).

What ends a run early:
- cancel: the model call and tools stop; the response ends `cancelled`, its stream ends
  with `response.incomplete` carrying it (see `settle.py`);
- shutdown after the grace period: work that streamed no output yet goes back to the
  queue for another replica; work that did is ended `failed` (see `settle.py` for why it is
  not run again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from loom.config import Settings
from loom.engine.event_hub import EventHub
from loom.engine.event_log import EventLogWriter
from loom.engine.events import Event
from loom.engine.loop import run_turn
from loom.engine.request import CreateResponse
from loom.engine.settle import cancelled_event, end_failed_in, requeue_or_fail_in
from loom.engine.turn_setup import PreparedTurn, prepare_turn
from loom.errors import LoomError
from loom.inference.registry import ModelRegistry
from loom.security.url_guard import UrlPolicy
from loom.store import DuplicateIdError, Stores
from loom.store.background import (
    end_job_in,
    insert_events_in,
    lock_job_in,
    response_exists_in,
)
from loom.store.conversations import append_items_in
from loom.store.responses import upsert_response_in
from loom.tools.file_search import Searcher

log = logging.getLogger("loom.engine")

Serialize = Callable[[Event], bytes]
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
HOLD_SECONDS = 0.05  # the longest the event log waits for a stream's first token


@dataclass
class LocalRun:
    """One background response running in this process.

    Its frames are kept in memory for the client that created it with `stream: true`,
    which gets them as they are made (once the create has committed), without waiting
    for the event log's writes. The log catches up within the flush interval. If this
    process dies in between, that client may hold events the log lost; `resume.follow`
    then ends its resumed stream right after what it saw.

    When that client streams (`streamed`), the turn waits, once, for its stream to take
    the first delta: a fast model's answer is often all buffered by then, and the turn
    would otherwise build every event before the stream could send its first token. Until
    then (at most `HOLD_SECONDS` after the create), the event log's writer gathers events
    without writing or publishing them, so its database work does not delay that token
    either; it catches up at once after.
    """

    prepared: PreparedTurn
    owner: str
    writer: EventLogWriter = field(init=False)
    frames: list[bytes] = field(default_factory=list)  # by sequence number, from `base`
    base: int = 0
    next_seq: int = 2
    terminal: Event | None = None
    error: Exception | None = None
    stop_reason: str | None = None  # "cancel" | "shutdown"
    ended: bool = False
    pump: asyncio.Task | None = None
    task: asyncio.Task | None = None
    stored: asyncio.Event = field(default_factory=asyncio.Event)  # its rows are committed
    streamed: bool = False  # the client that created it reads `frames_from`
    taken: int = 0  # how many frames a stream has taken
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _took: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def response_id(self) -> str:
        return self.prepared.turn.response["id"]

    def push(self, seq: int, frame: bytes, to_log: bool = True) -> None:
        self.frames.append(frame)
        self._changed.set()  # the stream's turn first, then the writer's tasks
        if to_log:
            self.writer.add(seq, frame)

    async def handed_over(self, timeout: float = 0.1) -> None:
        """Wait until a stream has taken the frames pushed so far, if the creating client
        streams; at most `timeout` (its stream may be gone, or never start). Then the
        event log's writer goes on."""
        if not self.streamed:
            return
        target = len(self.frames)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.taken < target:
                    self._took.clear()
                    await self._took.wait()
        self.writer.release()

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    async def frames_from(self, start: int) -> AsyncIterator[bytes]:
        """The frames from sequence number `start` on, as they come, until the run ends.
        Frames already waiting go out as one chunk."""
        index = start - self.base
        while True:
            if index < len(self.frames):
                chunk = b"".join(self.frames[index:])
                index = self.taken = len(self.frames)
                self._took.set()
                yield chunk
                continue
            if self.ended:
                return
            self._changed.clear()
            await self._changed.wait()


def queued_prelude(response: dict[str, Any], serialize: Serialize) -> list[tuple[int, bytes]]:
    queued = {**response, "status": "queued", "output": []}
    return [
        (0, serialize({"type": "response.created", "sequence_number": 0, "response": queued})),
        (1, serialize({"type": "response.queued", "sequence_number": 1, "response": queued})),
    ]


def strip_secrets(body: dict[str, Any]) -> dict[str, Any]:
    """The request as stored for a re-run: MCP credentials are never stored."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return body
    clean = [
        {k: v for k, v in t.items() if k not in ("authorization", "headers")}
        if isinstance(t, dict)
        else t
        for t in tools
    ]
    return {**body, "tools": clean}


class BackgroundRunner:
    def __init__(
        self,
        settings: Settings,
        models: ModelRegistry,
        stores: Stores,
        serialize: Serialize,
        hub: EventHub,
        replica_id: str,
        url_policy: UrlPolicy,
        searcher: Searcher | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.stores = stores
        self.serialize = serialize
        self.hub = hub
        self.replica_id = replica_id
        self.url_policy = url_policy
        self.searcher = searcher  # vector store search, for the file_search tool
        self.runs: dict[str, LocalRun] = {}

    def _new_run(self, prepared: PreparedTurn, owner: str, base: int = 0) -> LocalRun:
        run = LocalRun(prepared, owner, base=base)
        response_id = run.response_id

        def published(first_seq: int, frames: list[bytes]) -> None:
            self.hub.publish(response_id, first_seq, frames)

        run.writer = EventLogWriter(
            self.stores.background, response_id, self.settings.event_flush_interval, published
        )
        return run

    async def start(
        self,
        prepared: PreparedTurn,
        owner: str,
        body: dict[str, Any],
        claim: bool = True,
        streamed: bool = False,
    ) -> LocalRun:
        """Store a new background response and run it here. The model call starts while
        the first rows are being written, so background mode adds no wait for the model.
        The turn's events wait for the commit (`stored`): the stream starts only once every
        replica knows the response, and a fast model's chunks would otherwise keep this
        event loop busy while the commit's replies wait. `streamed`: the caller streams
        `frames_from(0)` to the client."""
        response = prepared.turn.response
        prelude = queued_prelude(response, self.serialize)
        run = self._new_run(prepared, owner)
        run.streamed = streamed
        for seq, frame in prelude:
            run.push(seq, frame, to_log=False)
        if claim:
            run.pump = asyncio.create_task(self._pump(run))
        try:
            await self.stores.background.create(
                owner,
                {**response, "status": "queued", "output": []},
                prepared.input_items,
                prepared.conversation_id,
                strip_secrets(body),
                prelude,
                self.replica_id if claim else None,
                self.settings.lease_seconds,
            )
        except BaseException:
            if run.pump is not None:
                run.pump.cancel()
            raise
        run.stored.set()
        if claim:
            if streamed:
                run.writer.hold()
                asyncio.get_running_loop().call_later(HOLD_SECONDS, run.writer.release)
            self._supervise(run)
        else:
            run.end()
        return run

    async def run_claimed(self, job: dict[str, Any]) -> None:
        """Run a job this replica claimed from the queue, from its stored request."""
        owner, response_id = job["owner"], job["response_id"]
        stored = await self.stores.responses.get(owner, response_id)
        try:
            if stored is None:
                raise LookupError("the response was deleted")
            req = CreateResponse.model_validate(job["request"])
            prepared = await prepare_turn(
                req,
                owner=owner,
                settings=self.settings,
                models=self.models,
                stores=self.stores,
                url_policy=self.url_policy,
                searcher=self.searcher,
                response_id=response_id,
                created_at=stored["response"]["created_at"],
            )
        except (LoomError, LookupError, ValueError) as exc:
            message = exc.message if isinstance(exc, LoomError) else str(exc)
            async with self.stores.db.write() as conn:
                await end_failed_in(
                    conn,
                    response_id,
                    self.serialize,
                    f"The queued response could not start: {message}",
                )
            self.hub.wake(response_id)
            return
        run = self._new_run(prepared, owner, base=2)
        run.stored.set()
        run.pump = asyncio.create_task(self._pump(run))
        self._supervise(run)

    def _supervise(self, run: LocalRun) -> None:
        self.runs[run.response_id] = run
        run.writer.start()
        run.task = asyncio.create_task(self._finish(run))

    async def _pump(self, run: LocalRun) -> None:
        """Consume the turn. Its own `response.created` is dropped (the prelude has one)
        and its sequence numbers move up by one for the `response.queued` before them."""
        events = run_turn(run.prepared.turn)
        flushed = False  # whether the first delta has been handed to the stream
        try:
            async for event in events:
                if event["type"] == "response.created":
                    continue
                seq = event["sequence_number"] = event["sequence_number"] + 1
                run.next_seq = seq + 1
                if event["type"] in TERMINAL:
                    run.terminal = event
                    return
                if not run.stored.is_set():  # the model's first chunk came before the commit
                    await run.stored.wait()
                run.push(seq, self.serialize(event))
                if not flushed and event["type"].endswith(".delta"):
                    flushed = True
                    await run.handed_over()
        except Exception as exc:  # the upstream refused the first call, before any event
            run.error = exc
        finally:
            await events.aclose()

    async def _finish(self, run: LocalRun) -> None:
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await run.pump
            await self._settle(run)
        except Exception:
            log.exception("background response %s could not be ended", run.response_id)
        finally:
            self.runs.pop(run.response_id, None)
            run.end()
            self.hub.wake(run.response_id)

    async def _settle(self, run: LocalRun) -> None:
        response = run.prepared.turn.response
        if run.stop_reason == "shutdown":
            # Everything the turn produced is stored first, so the rule sees any output (and
            # any tool call) it made: such work is not run twice.
            rest = await run.writer.take_rest()
            final = None
            async with self.stores.db.write() as conn:
                job = await lock_job_in(conn, run.response_id)
                mine = job and job["state"] == "running" and job["lease_owner"] == self.replica_id
                if not mine:
                    return
                await insert_events_in(conn, run.response_id, rest)
                final = await requeue_or_fail_in(
                    conn,
                    job,
                    self.serialize,
                    "The Loom process running this response shut down before it ended.",
                )
            if final is not None:
                run.push(*final, to_log=False)
            return
        if run.terminal is None and run.stop_reason is None:
            message = run.error.message if isinstance(run.error, LoomError) else None
            if message is None:
                log.error("background response %s failed: %r", run.response_id, run.error)
                message = "The server had an error while processing the response."
            run.push(2, self.serialize(_event("response.in_progress", 2, response)))
            response.update(status="failed", error={"code": "server_error", "message": message})
            run.terminal = _event("response.failed", 3, response)
        await self._commit_end(run)

    async def _commit_end(self, run: LocalRun) -> None:
        """The end, in one transaction; a failed conversation append fails the response."""
        response = run.prepared.turn.response
        rest = await run.writer.take_rest()
        try:
            final = await self._end_transaction(run, rest, conversation=True)
        except (LookupError, DuplicateIdError) as exc:
            log.warning("response %s could not be stored: %s", run.response_id, exc)
            response.update(
                status="failed",
                completed_at=None,
                error={
                    "code": "server_error",
                    "message": f"The turn could not be stored: {exc}. The conversation was "
                    "left unchanged.",
                },
            )
            if run.terminal is not None:
                run.terminal["type"] = "response.failed"
            final = await self._end_transaction(run, rest, conversation=False)
        if final is not None:
            run.push(final[0], final[1], to_log=False)

    async def _end_transaction(
        self, run: LocalRun, rest: list[tuple[int, bytes]], conversation: bool
    ) -> tuple[int, bytes] | None:
        prepared = run.prepared
        response = prepared.turn.response
        async with self.stores.db.write() as conn:
            job = await lock_job_in(conn, run.response_id)
            if job is None or job["state"] != "running" or job["lease_owner"] != self.replica_id:
                log.warning("response %s was settled elsewhere; result dropped", run.response_id)
                return None
            if not await response_exists_in(conn, run.response_id):
                # Deleted while it ran: nothing is stored again; its stream still ends.
                await end_job_in(conn, run.response_id)
                if run.terminal is None or run.stop_reason == "cancel":
                    return None
                return run.terminal["sequence_number"], self.serialize(run.terminal)
            cancelled = job["cancel_requested"] or run.stop_reason == "cancel"
            if cancelled:
                # Its stream ends with the cancel's terminal event, in place of the turn's
                # own if the turn had ended meanwhile.
                seq = run.next_seq if run.terminal is None else run.terminal["sequence_number"]
                snapshot = {**response, "status": "cancelled", "output": list(response["output"])}
                terminal = (seq, self.serialize(cancelled_event(seq, snapshot)))
            else:
                snapshot = response
                terminal = (run.terminal["sequence_number"], self.serialize(run.terminal))
            await upsert_response_in(
                conn, run.owner, snapshot, prepared.input_items, prepared.conversation_id
            )
            ok = response["status"] != "failed" and not cancelled
            if conversation and ok and prepared.conversation_id is not None:
                items = prepared.input_items + response["output"]
                if not await append_items_in(conn, run.owner, prepared.conversation_id, items):
                    raise LookupError(f"conversation {prepared.conversation_id!r} not found")
            frames = [*rest, terminal]
            await insert_events_in(conn, run.response_id, frames)
            await end_job_in(conn, run.response_id, notify=False)
        return terminal

    # -- stopping runs -------------------------------------------------------------------

    def stop(self, response_id: str, reason: str) -> bool:
        """Stop a local run: its model call and tools are cancelled, then it is settled."""
        run = self.runs.get(response_id)
        if run is None or run.pump is None or run.pump.done():
            return False
        run.stop_reason = run.stop_reason or reason
        run.pump.cancel()
        return True

    async def drain(self, grace: float) -> None:
        """Let local runs finish for up to `grace` seconds, then stop the rest; what had
        not streamed output goes back to the queue."""
        tasks = [r.task for r in self.runs.values() if r.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                for response_id in list(self.runs):
                    self.stop(response_id, "shutdown")
                await asyncio.wait(pending, timeout=10)


def _event(type_: str, seq: int, response: dict[str, Any]) -> Event:
    return {"type": type_, "sequence_number": seq, "response": response}
