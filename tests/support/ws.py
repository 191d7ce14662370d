"""WebSocket-mode helpers for tests: read one response's events off a socket and check them.

Every frame is checked against the `openai` SDK's `ResponsesServerEvent` union (the
WebSocket variants, with `stream_id`); a whole response's events also go through the
stream validator used for SSE, so both transports meet the same grammar.
"""

from __future__ import annotations

from typing import Any

import orjson
from openai.types.responses.responses_server_event import ResponsesServerEvent
from pydantic import TypeAdapter

from tests.support.stream_validator import TERMINAL, validate_stream

_SERVER_EVENT = TypeAdapter(ResponsesServerEvent)


def ws_url(server) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/responses"


def check_frame(event: dict[str, Any]) -> dict[str, Any]:
    parsed = _SERVER_EVENT.validate_python(event)
    assert parsed.type == event["type"], f"SDK parsed {event['type']} as {parsed.type}"
    return event


def read_event(ws, timeout: float = 30) -> dict[str, Any]:
    return check_frame(orjson.loads(ws.recv(timeout=timeout)))


def read_response(ws, timeout: float = 30) -> list[dict[str, Any]]:
    """Events up to and including a terminal event, or a lone `error` event."""
    events = []
    while True:
        event = read_event(ws, timeout)
        events.append(event)
        if event["type"] in TERMINAL or (event["type"] == "error" and len(events) == 1):
            return events


def validated(events: list[dict[str, Any]], stream_id: str | None = None) -> dict[str, Any]:
    """Validate one response's events like an SSE stream; return the final Response."""
    for event in events:
        assert event.get("stream_id") == stream_id, f"{event['type']} on the wrong lane"
    plain = [{k: v for k, v in e.items() if k != "stream_id"} for e in events]
    return validate_stream(plain)


def create(ws, **body: Any) -> dict[str, Any]:
    """Send a response.create, read and validate its events; return the final Response."""
    ws.send(orjson.dumps({"type": "response.create", **body}).decode())
    return validated(read_response(ws), body.get("stream_id"))


def send_create(ws, **body: Any) -> None:
    ws.send(orjson.dumps({"type": "response.create", **body}).decode())
