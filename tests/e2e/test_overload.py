"""Overload end to end: past `max_inflight_turns`, a new turn gets a 429 with `Retry-After`
at once (in OpenAI's error shape, never reaching the upstream), the turns already running
finish untouched, and their places come back when they end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import run_loom
from tests.support.lifecycle import sse_events, text_of
from tests.support.stream_validator import validate_stream
from tests.support.upstream import Turn

MODEL = "openai/gpt-4o"
LIMIT = 2


@pytest.fixture(scope="module")
def small_loom(loom_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("overload")
    env = {
        **loom_env,
        "LOOM_DB_URL": f"sqlite+aiosqlite:///{workdir / 'loom.db'}",
        "LOOM_MAX_INFLIGHT_TURNS": str(LIMIT),
    }
    with run_loom(env) as server:
        yield server


class OpenStream:
    """A streamed response read event by event, left open between reads."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self._events = sse_events(response.iter_lines())

    def read_until(self, event_type: str | None) -> None:
        """Read events until one of `event_type` (None: to the end of the stream)."""
        for name, event in self._events:
            self.events.append((name, event))
            if event["type"] == event_type:
                return
        assert event_type is None, f"the stream ended before a {event_type} event"


@contextlib.contextmanager
def started_stream(http: httpx.Client, text: str) -> Iterator[OpenStream]:
    """A stream whose turn has begun (its first text delta has arrived)."""
    body = {"model": MODEL, "input": text, "stream": True}
    with http.stream("POST", "/v1/responses", json=body) as response:
        stream = OpenStream(response)
        stream.read_until("response.output_text.delta")
        yield stream


def _assert_overloaded(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == "1"
    error = answer.json()["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert f"limit of {LIMIT} responses in progress" in error["message"]


def test_a_turn_past_the_limit_is_refused_at_once_and_running_turns_finish(
    small_loom, upstream, upstream_server
):
    _, upstream_http = upstream_server
    hold = asyncio.Event()  # the upstream keeps both turns open until the test releases them
    upstream.script(
        Turn(text="first turn answer", hold_after=2, hold=hold),
        Turn(text="second turn answer", hold_after=2, hold=hold),
    )
    with (
        httpx.Client(base_url=small_loom.url, timeout=60, trust_env=False) as http,
        started_stream(http, "one") as first,
        started_stream(http, "two") as second,
    ):
        # Both places are taken, and both turns wait on the upstream: these answers come
        # without waiting for them (they could not come at all otherwise).
        _assert_overloaded(http.post("/v1/responses", json={"model": MODEL, "input": "x"}))
        streamed = {"model": MODEL, "input": "x", "stream": True}
        _assert_overloaded(http.post("/v1/responses", json=streamed))
        # Validation comes before admission: a bad request gets its 400, full or not.
        bad = http.post("/v1/responses", json={"model": MODEL, "input": "x", "top_p": "hi"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "top_p"
        assert len(upstream.requests) == 2  # the refused turns never reached the upstream

        upstream_http.loop.call_soon_threadsafe(hold.set)
        first.read_until(None)
        second.read_until(None)
    for stream, text in ((first, "first turn answer"), (second, "second turn answer")):
        final = validate_stream(stream.events)
        assert final["status"] == "completed"
        assert text_of([event for _, event in stream.events]) == text

    # Once the admitted turns have ended and been stored, their places are free again.
    small_loom.wait_for_turns()
    upstream.script(Turn(text="room again"))
    with httpx.Client(base_url=small_loom.url, timeout=60, trust_env=False) as http:
        answer = http.post("/v1/responses", json={"model": MODEL, "input": "three"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"][0]["content"][0]["text"] == "room again"
