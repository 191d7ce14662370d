"""The turn runner: every stream ends with exactly one terminal event, whatever fails, and
the stored response says what the client was told."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy.exc

from loom.engine.events import Event, EventSequencer
from loom.engine.loop import run_turn
from loom.engine.turn_runner import TurnRunner, turn_saver
from loom.errors import UpstreamError
from loom.store import Stores
from loom.testing import Reply, ScriptedProvider
from tests.engine.conftest import OWNER, prepare
from tests.support.stream_validator import parse_sse, validate_stream

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def _sse_bytes(event: dict[str, Any]) -> bytes:
    from loom.api.sse import typed_event_bytes  # the serializer the API layer passes in

    return typed_event_bytes(event)


class FailingResponses:
    """A response store whose next `failures` saves raise a database error."""

    def __init__(self, real: Any, failures: int):
        self._real = real
        self.failures = failures
        self.attempts = 0

    async def save_turn(self, *args: Any, **kwargs: Any) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise sqlalchemy.exc.OperationalError(
                "INSERT INTO responses", {}, Exception("disk I/O error")
            )
        await self._real.save_turn(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def failing(stores: Stores, failures: int) -> tuple[Stores, FailingResponses]:
    responses = FailingResponses(stores.responses, failures)
    return dataclasses.replace(stores, responses=responses), responses


async def streamed(runner: TurnRunner, events: AsyncIterator[Event], persist) -> list:
    body = await runner.stream(events, persist, _sse_bytes)
    raw = b"".join([chunk async for chunk in body])
    return parse_sse(raw)


async def test_a_save_that_raises_a_database_error_still_ends_the_stream(stores):
    broken, responses = failing(stores, failures=1)
    prepared = await prepare(stores, ScriptedProvider(Reply(text="kept?")), {"input": "hi"})
    persist = turn_saver(broken, OWNER, prepared, store=True)
    events = await streamed(TurnRunner(), run_turn(prepared.turn), persist)
    final = validate_stream(events)  # exactly one terminal event, last
    assert [t for t, _ in events if t in TERMINAL] == ["response.failed"]
    assert final["status"] == "failed"
    assert final["error"]["code"] == "server_error"
    assert "could not be stored" in final["error"]["message"]
    assert "disk I/O" not in final["error"]["message"]  # the database's words stay in the log
    # The second save (of the failed response alone) worked: the record says failed too.
    assert responses.attempts == 2
    stored = await stores.responses.get(OWNER, final["id"])
    assert stored["response"]["status"] == "failed"
    assert stored["response"]["error"] == final["error"]


async def test_a_database_that_stays_down_still_ends_the_stream(stores):
    broken, responses = failing(stores, failures=2)
    prepared = await prepare(stores, ScriptedProvider(Reply(text="lost")), {"input": "hi"})
    persist = turn_saver(broken, OWNER, prepared, store=True)
    events = await streamed(TurnRunner(), run_turn(prepared.turn), persist)
    final = validate_stream(events)
    assert [t for t, _ in events if t in TERMINAL] == ["response.failed"]
    assert responses.attempts == 2
    assert await stores.responses.get(OWNER, final["id"]) is None


async def test_a_non_streamed_turn_whose_save_raises_returns_failed(stores):
    broken, _ = failing(stores, failures=1)
    prepared = await prepare(stores, ScriptedProvider(Reply(text="x")), {"input": "hi"})
    response = await TurnRunner().run(
        run_turn(prepared.turn), turn_saver(broken, OWNER, prepared, store=True)
    )
    assert response["status"] == "failed"
    assert (await stores.responses.get(OWNER, response["id"]))["response"]["status"] == "failed"


async def test_a_persist_callable_that_raises_still_ends_the_stream(stores):
    prepared = await prepare(stores, ScriptedProvider(Reply(text="x")), {"input": "hi"})

    async def persist(response: dict[str, Any]) -> None:
        raise RuntimeError("a bug in the save")

    events = await streamed(TurnRunner(), run_turn(prepared.turn), persist)
    assert validate_stream(events)["status"] == "failed"


async def test_events_that_break_off_end_with_a_failed_event(stores):
    prepared = await prepare(stores, ScriptedProvider(), {"input": "hi"})
    skeleton = prepared.turn.response
    saved: list[dict[str, Any]] = []

    async def broken_events() -> AsyncIterator[Event]:
        seq = EventSequencer()
        yield seq.response_event("response.created", dict(skeleton))
        yield seq.response_event("response.in_progress", dict(skeleton))
        raise RuntimeError("the engine itself failed")

    async def persist(response: dict[str, Any]) -> None:
        saved.append(response)

    events = await streamed(TurnRunner(), broken_events(), persist)
    final = validate_stream(events)
    assert [t for t, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert final["status"] == "failed"
    assert saved == [final]  # what was announced is what was saved


async def test_a_client_that_stops_reading_does_not_stop_the_turn(stores):
    provider = ScriptedProvider(Reply(text="the whole answer"))
    prepared = await prepare(stores, provider, {"input": "hi"})
    runner = TurnRunner()
    persist = turn_saver(stores, OWNER, prepared, store=True)
    body = await runner.stream(run_turn(prepared.turn), persist, _sse_bytes)
    first = await anext(body)  # response.created, sent once the model answered
    assert first.startswith(b"event: response.created")
    await body.aclose()  # the client went away
    assert await runner.wait_idle(timeout=30)
    stored = await stores.responses.get(OWNER, prepared.turn.response["id"])
    assert stored["response"]["status"] == "completed"
    assert stored["response"]["output"][0]["content"][0]["text"] == "the whole answer"


async def test_a_failed_turn_whose_save_raises_keeps_its_own_error(stores):
    broken, responses = failing(stores, failures=1)
    reply = Reply(text="one two three", fail_after=2, error=UpstreamError("reset by peer"))
    prepared = await prepare(stores, ScriptedProvider(reply), {"input": "hi"})
    persist = turn_saver(broken, OWNER, prepared, store=True)
    events = await streamed(TurnRunner(), run_turn(prepared.turn), persist)
    final = validate_stream(events)
    assert final["error"] == {"code": "server_error", "message": "reset by peer"}
    assert responses.attempts == 2
    stored = await stores.responses.get(OWNER, final["id"])
    assert stored["response"]["error"] == final["error"]
