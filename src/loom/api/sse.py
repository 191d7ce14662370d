"""Server-sent events: each event leaves in a single write, serialized exactly once.

A turn's stream (`turn_stream_response`) is written straight through ASGI `send`: a turn
runs to its end whatever the client does, so its stream ends on its own and needs none of
Starlette's per-response machinery (a task and a cancel scope listening for the client's
disconnect). So is the stream of the client that created a background response: its
frames are in memory and end with the run. Streams that follow a stored background
response (reading the event log, which costs queries) keep `sse_response`, which stops
when the client leaves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from loom.engine.turn_runner import LastFrame

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE_LINE = b"data: [DONE]\n\n"


def chat_chunk_bytes(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def typed_event_bytes(event: dict[str, Any]) -> bytes:
    """`event: <type>` plus `data: <json>`, the Responses API framing."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


_TURN_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    *((name.lower().encode(), value.encode()) for name, value in SSE_HEADERS.items()),
]


class TurnStreamResponse(Response):
    """Frames that end on their own, each written as one HTTP chunk as soon as it comes."""

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[bytes]) -> None:
        self.frames = frames
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_TURN_STREAM_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # After a disconnect the server ignores what is sent: the turn still runs to its
        # end (and is stored), and its remaining frames are dropped here.
        async for frame in self.frames:
            last = type(frame) is LastFrame  # the body ends with it, in the same write
            await send({"type": "http.response.body", "body": frame, "more_body": not last})
            if last:
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def turn_stream_response(frames: AsyncIterator[bytes]) -> TurnStreamResponse:
    return TurnStreamResponse(frames)
