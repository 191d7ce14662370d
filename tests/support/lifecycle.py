"""Helpers for background-response tests: read SSE streams event by event (and drop them
part-way, as a client whose connection breaks), and wait on a real condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpx
import orjson

T = TypeVar("T")


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Each event of an SSE stream's lines as it completes: its `event:` name and its
    parsed data."""
    name, data = None, []
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            yield name, orjson.loads("\n".join(data))
            name, data = None, []


def read_sse(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    stop_after: int | None = None,
    params: dict[str, Any] | None = None,
    timeout: float = 60,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The events of a stream as they arrive; with `stop_after`, the connection is closed
    after that many events. Checks each `event:` line against its data's type."""
    events: list[dict[str, Any]] = []
    with (
        httpx.Client(timeout=timeout) as http,
        http.stream(method, url, json=body, params=params) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for name, event in sse_events(response.iter_lines()):
            assert event["type"] == name, f"event line {name} != {event['type']}"
            events.append(event)
            if on_event is not None:
                on_event(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def wait_for(
    probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 30, what: str = ""
) -> T:
    """Poll `probe` until `done(value)`, with a deadline (no event exists to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'a condition'}: {value!r}")
        time.sleep(0.02)


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
