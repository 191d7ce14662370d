"""The pacer: work past a first token is bounded per event-loop pass, parked work resumes
oldest first, nothing is lost or left parked, and a turn that has not reached its first
token gets through while others stream.

The pacer's clock is a counter here (one tick per look), so every bound is exact."""

from __future__ import annotations

import asyncio
import itertools
import types
from collections.abc import AsyncIterator
from typing import Any

from loom.engine.first_token_priority import Pacer
from loom.engine.turn_runner import TurnRunner
from tests.support.stream_validator import parse_sse


@types.coroutine
def next_pass():
    """Let the event loop run one pass: a bare yield to the task, which is rescheduled at
    the end of the ready queue. Nothing here waits for time."""
    yield


def _ticking_pacer(budget: int, per_pass: int) -> Pacer:
    """A pacer whose clock advances by one at each look: `budget` looks per window."""
    return Pacer(budget=budget, per_pass=per_pass, clock=itertools.count().__next__)


async def _paced_worker(pacer: Pacer, name: int, steps: int, log: list) -> None:
    for step in range(steps):
        log.append((name, step))
        if pacer.spent():
            await pacer.park()


async def _passes(count: int, seen: list, log: list) -> None:
    """One hop per event-loop pass, noting how much paced work ran in each pass."""
    for _ in range(count):
        before = len(log)
        await next_pass()
        seen.append(len(log) - before)


async def test_paced_work_per_pass_is_bounded_and_all_of_it_finishes():
    pacer = _ticking_pacer(budget=10, per_pass=2)
    log: list = []
    seen: list[int] = []
    prober = asyncio.create_task(_passes(400, seen, log))  # first, to see the first pass
    workers = [asyncio.create_task(_paced_worker(pacer, n, 200, log)) for n in range(20)]
    await asyncio.gather(*workers, prober)
    # A window lets `budget` + 1 steps through; each other task that runs in the pass (all
    # 20 as they start, then the `per_pass` woken ones) takes one step before it looks.
    assert seen[0] <= 10 + 1 + 20
    assert max(seen[1:]) <= 10 + 1 + 2
    assert pacer.parks > 0
    assert sorted(log) == [(n, s) for n in range(20) for s in range(200)]
    for n in range(20):  # each worker's own steps stay in order
        assert [s for name, s in log if name == n] == list(range(200))
    assert not pacer._parked


async def test_without_a_budget_the_same_work_runs_in_one_pass():
    """The control for the test above: a budget nobody reaches never parks anyone."""
    pacer = _ticking_pacer(budget=10**9, per_pass=2)
    log: list = []
    seen: list[int] = []
    prober = asyncio.create_task(_passes(3, seen, log))
    workers = [asyncio.create_task(_paced_worker(pacer, n, 200, log)) for n in range(20)]
    await asyncio.gather(*workers, prober)
    assert max(seen) == 20 * 200
    assert pacer.parks == 0


async def test_parked_work_resumes_oldest_first():
    pacer = _ticking_pacer(budget=0, per_pass=1)
    order: list[int] = []

    async def park_then_note(n: int) -> None:
        await pacer.park()
        order.append(n)

    await asyncio.gather(*(park_then_note(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]


async def test_a_cancelled_parked_task_does_not_hold_up_the_others():
    pacer = _ticking_pacer(budget=0, per_pass=1)
    done: list[int] = []

    async def park_then_note(n: int) -> None:
        await pacer.park()
        done.append(n)

    first = asyncio.create_task(park_then_note(0))
    others = [asyncio.create_task(park_then_note(n)) for n in (1, 2)]
    await next_pass()  # all three are parked now
    first.cancel()
    await asyncio.gather(*others)
    assert done == [1, 2]
    assert first.cancelled()


def _event(type_: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "sequence_number": seq, **extra}


async def _buffered_turn(response_id: str, deltas: int) -> AsyncIterator[dict[str, Any]]:
    """A turn whose whole answer is already there: it never waits between events."""
    response = {"id": response_id, "status": "in_progress", "output": []}
    yield _event("response.created", 0, response=response)
    for i in range(deltas):
        yield _event("response.output_text.delta", i + 1, delta=f"w{i} ")
    done = {**response, "status": "completed"}
    yield _event("response.completed", deltas + 1, response=done)


async def _persist(_: dict[str, Any]) -> None:
    return None


def _frame(event: dict[str, Any]) -> bytes:
    from loom.api.sse import typed_event_bytes

    return typed_event_bytes(event)


async def _first_delta_and_rest(runner: TurnRunner, response_id: str, deltas: int, marks: list):
    body = await runner.stream(_buffered_turn(response_id, deltas), _persist, _frame)
    frames = []
    async for frame in body:
        frames.append(frame)
        if len(frames) == 1:
            marks.append((response_id, "first"))
    marks.append((response_id, "end"))
    return parse_sse(b"".join(frames))


async def _priority_run(pacer: Pacer) -> tuple[list, list, list]:
    runner = TurnRunner(pacer=pacer)
    marks: list = []
    long = asyncio.create_task(_first_delta_and_rest(runner, "resp_long", 2000, marks))
    while not marks:  # the long turn is past its first token: now a new one comes
        await next_pass()
    new = asyncio.create_task(_first_delta_and_rest(runner, "resp_new", 3, marks))
    return marks, await long, await new


async def test_a_new_turn_reaches_its_first_token_while_a_long_one_streams():
    marks, long_events, new_events = await _priority_run(_ticking_pacer(budget=20, per_pass=4))
    assert marks.index(("resp_new", "first")) < marks.index(("resp_long", "end"))
    # Parking loses and reorders nothing.
    assert [e["sequence_number"] for _, e in long_events] == list(range(2002))
    assert [e["sequence_number"] for _, e in new_events] == list(range(5))


async def test_without_the_pacer_the_long_turn_runs_to_its_end_first():
    """The control: with a budget nobody reaches, the buffered turn finishes before the
    new one is even started, which is what the pacer is there to prevent."""
    marks, _, _ = await _priority_run(_ticking_pacer(budget=10**9, per_pass=4))
    assert marks.index(("resp_long", "end")) < marks.index(("resp_new", "first"))


async def _turns_released_by_one_save(pacer: Pacer, turns: int) -> list[int]:
    """`turns` turns whose saves all finish at once (as a group commit ends them); how many
    of their terminal events reach the readers in each pass after that."""
    runner = TurnRunner(pacer=pacer)
    saved = asyncio.Event()
    waiting: list[str] = []

    async def group_save(response: dict[str, Any]) -> None:
        waiting.append(response["id"])
        await saved.wait()

    ended: list[str] = []

    async def read(n: int) -> None:
        body = await runner.stream(_buffered_turn(f"resp_{n}", 1), group_save, _frame)
        async for frame in body:
            if b"response.completed" in frame:
                ended.append(f"resp_{n}")

    readers = [asyncio.create_task(read(n)) for n in range(turns)]
    while len(waiting) < turns:
        await next_pass()
    saved.set()
    per_pass: list[int] = []
    while len(ended) < turns:
        before = len(ended)
        await next_pass()
        per_pass.append(len(ended) - before)
    await asyncio.gather(*readers)
    return per_pass


async def test_turns_released_together_by_a_save_end_a_few_per_pass():
    per_pass = await _turns_released_by_one_save(_ticking_pacer(budget=2, per_pass=2), 30)
    assert max(per_pass) <= 2 + 1 + 2
    assert sum(per_pass) == 30


async def test_without_the_pacer_a_save_ends_all_its_turns_in_one_pass():
    per_pass = await _turns_released_by_one_save(_ticking_pacer(budget=10**9, per_pass=2), 30)
    assert max(per_pass) == 30
