"""WebSocket mode: `GET /v1/responses` upgraded, one connection carrying many responses.

The client sends `{"type": "response.create", ...create body...}` messages; each response
streams back as the same typed events as SSE, one JSON text message per event, produced by
the same turn runner and event code as HTTP. On top of HTTP, a connection offers:

- lanes: messages with the same `stream_id` run one after another (FIFO); different lanes
  run side by side, and every event of a lane carries its `stream_id`;
- `generate: false`: the turn is set up and recorded without running the model (a warm-up
  that returns a response id to chain from);
- memory: the connection keeps its recent responses' histories, so `previous_response_id`
  works without a store round trip and even with `store: false`. A continuation that fails
  evicts the response it continued from;
- limits: `websocket_max_connections` open connections and `websocket_max_age` seconds per
  connection; past either, an `error` event with code `websocket_connection_limit_reached`.

A client that disconnects stops only its reading side: a running turn is finished and
stored exactly as on HTTP. With `websocket_enabled: false` the upgrade is refused with 426,
which tells clients such as Codex to fall back to HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from loom.api.body import validation_error
from loom.api.deps import ANONYMOUS
from loom.api.json import OrjsonResponse
from loom.api.responses import begin_turn
from loom.engine.events import Event
from loom.engine.request import CreateResponse
from loom.engine.turn_runner import Persist
from loom.engine.turn_setup import PreparedTurn
from loom.errors import InvalidRequestError, LoomError
from loom.services import Services

log = logging.getLogger("loom.api")

router = APIRouter()

REMEMBERED_RESPONSES = 64  # per connection
LIMIT_CODE = "websocket_connection_limit_reached"
# Fields of a create body that make no sense on a socket, or belong to the envelope.
_ENVELOPE = ("type", "stream_id", "generate", "stream", "stream_options")


def error_event(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    error = {"type": type_, "code": code, "message": message, "param": param}
    return {"type": "error", "status": status, "error": error}


def _loom_error_event(exc: LoomError) -> dict[str, Any]:
    status = exc.status_code
    if exc.code == "previous_response_not_found":
        status = 400  # as OpenAI answers it on a socket
    return error_event(status, exc.message, type_=exc.error_type, code=exc.code, param=exc.param)


def _framer(stream_id: str | None):
    if stream_id is None:
        return lambda event: orjson.dumps(event).decode()

    def frame(event: Event) -> str:
        event["stream_id"] = stream_id
        return orjson.dumps(event).decode()

    return frame


class _Connection:
    def __init__(self, ws: WebSocket, svc: Services, who: str):
        self.ws = ws
        self.svc = svc
        self.who = who
        self.opened = time.monotonic()
        self.history: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.lanes: dict[str | None, asyncio.Queue] = {}
        self.workers: set[asyncio.Task] = set()  # one per lane with work queued
        self.pending: set[asyncio.Task] = set()  # error events on their way out
        self._send_lock = asyncio.Lock()
        self.closed = False

    async def send(self, text: str) -> None:
        if self.closed:
            return
        try:
            async with self._send_lock:
                await self.ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True  # the client left; running turns still finish and are stored

    async def send_event(self, event: dict[str, Any], stream_id: str | None = None) -> None:
        if stream_id is not None:
            event["stream_id"] = stream_id
        await self.send(orjson.dumps(event).decode())

    def too_old(self) -> bool:
        return time.monotonic() - self.opened > self.svc.settings.websocket_max_age

    async def serve(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:  # a binary message: JSON in UTF-8 all the same
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                if self.too_old():
                    age = int(self.svc.settings.websocket_max_age)
                    await self.send_event(
                        error_event(
                            400,
                            f"Responses websocket connection limit reached ({age} seconds). "
                            "Create a new websocket connection to continue.",
                            code=LIMIT_CODE,
                        )
                    )
                    await self.ws.close(1000)
                    return
                self._dispatch(text)
        finally:
            self.closed = True
            for worker in list(self.workers):
                worker.cancel()

    def _dispatch(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self._later(error_event(400, f"The message is not valid JSON: {exc}"))
            return
        if not isinstance(message, dict) or message.get("type") != "response.create":
            kind = message.get("type") if isinstance(message, dict) else None
            self._later(
                error_event(
                    400,
                    f"Unsupported event type {kind!r}; send 'response.create'.",
                    code="invalid_value",
                    param="type",
                )
            )
            return
        stream_id = message.get("stream_id")
        if stream_id is not None and not isinstance(stream_id, str):
            self._later(error_event(400, "'stream_id' must be a string.", param="stream_id"))
            return
        lane = self.lanes.get(stream_id)
        if lane is None:
            lane = self.lanes[stream_id] = asyncio.Queue()
            worker = asyncio.create_task(self._lane(lane, stream_id))
            self.workers.add(worker)
            worker.add_done_callback(self.workers.discard)
        lane.put_nowait(message)

    def _later(self, event: dict[str, Any]) -> None:
        task = asyncio.create_task(self.send_event(event))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _lane(self, lane: asyncio.Queue, stream_id: str | None) -> None:
        """Run a lane's messages in order; the lane ends when it has nothing queued."""
        while not lane.empty():
            message = lane.get_nowait()
            try:
                await self._respond(message, stream_id)
            except Exception:
                log.exception("websocket response failed")
                await self.send_event(
                    error_event(
                        500,
                        "The server had an error processing the request.",
                        type_="server_error",
                    ),
                    stream_id,
                )
        del self.lanes[stream_id]  # no await since the queue was seen empty: nothing is lost

    async def _respond(self, message: dict[str, Any], stream_id: str | None) -> None:
        body = {k: v for k, v in message.items() if k not in _ENVELOPE}
        generate = message.get("generate") is not False
        previous = body.get("previous_response_id")
        try:
            if body.get("background"):
                raise InvalidRequestError(
                    "background is not supported over WebSocket.", param="background"
                )
            try:
                req = CreateResponse.model_validate(body)
            except ValidationError as exc:
                raise validation_error(exc) from None
            history = self.history.get(previous) if isinstance(previous, str) else None
            admission = self.svc.turns.admit()
            try:
                prepared, events, persist = await begin_turn(
                    self.svc,
                    self.who,
                    req,
                    history=list(history) if history is not None else None,
                    generate=generate,
                )
                frames = await self.svc.turns.frames(
                    events,
                    self._remembering(prepared, persist, previous),
                    _framer(stream_id),
                    admission,
                )
            except BaseException:
                admission.release()  # if the runner has not already
                raise
        except LoomError as exc:
            self._forget(previous)
            await self.send_event(_loom_error_event(exc), stream_id)
            return
        async for frame in frames:
            await self.send(frame)

    def _forget(self, response_id: Any) -> None:
        if isinstance(response_id, str):
            self.history.pop(response_id, None)

    def _remembering(self, prepared: PreparedTurn, persist: Persist, previous: Any) -> Persist:
        """Save as HTTP does, then keep the history this response ends, for continuations."""

        async def save(response: dict[str, Any]) -> None:
            await persist(response)
            if response["status"] == "failed":
                self._forget(previous)
                return
            self.history[response["id"]] = (
                prepared.history + prepared.input_items + list(response["output"])
            )
            while len(self.history) > REMEMBERED_RESPONSES:
                self.history.popitem(last=False)

        return save


@router.websocket("/responses")
async def responses_socket(ws: WebSocket) -> None:
    svc: Services = ws.app.state.services
    settings = svc.settings
    if not settings.websocket_enabled:
        body = error_event(426, "WebSocket mode is disabled on this server; use HTTP.")
        await ws.send_denial_response(OrjsonResponse(body, status_code=426))
        return
    await ws.accept()
    if svc.websockets_open >= settings.websocket_max_connections:
        limit = settings.websocket_max_connections
        event = error_event(
            429,
            f"Responses websocket connection limit reached ({limit} open connections). "
            "Close a connection and try again.",
            code=LIMIT_CODE,
        )
        await ws.send_text(orjson.dumps(event).decode())
        await ws.close(1008)
        return
    svc.websockets_open += 1
    try:
        await _Connection(ws, svc, getattr(ws.state, "owner", ANONYMOUS)).serve()
    finally:
        svc.websockets_open -= 1
