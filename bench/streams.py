"""The streaming load of `bench.scale`: simulated clients that send `POST /v1/responses`
streams back to back, each on its own keep-alive connection, and what each one saw.

Two ways to run them: `run_load` sends a number of streams (the aborts phase reads every
one back afterwards), `run_window` keeps the load on and measures a window of it, with CPU
clocks read at both ends (the workers phase).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.client import Client, HttpError, encode_request
from bench.cpu_clocks import Clocks

MODEL = "openai/bench-model"
PROMPT = "Say something."
DELTA = b"event: response.output_text.delta"
COMPLETED = b"event: response.completed"
FAILED = b"event: response.failed"
RESPONSE_ID = re.compile(rb'"id":"(resp_[0-9a-f]+)"')


@dataclass(frozen=True)
class Reading:
    """The CPU clocks at one instant, with our connections per Loom process at the end."""

    clocks: Clocks
    connections: dict[int, int]


ClockReader = Callable[[], Reading]


@dataclass
class Outcome:
    """What one simulated client saw of one request."""

    status: int
    response_id: str | None = None
    dropped: bool = False
    completed: bool = False  # the stream ended with response.completed
    failed: bool = False  # the stream ended with response.failed
    took: float = 0.0
    ended_at: float = 0.0  # time.perf_counter() when the answer was read
    detail: bytes = b""  # what a failed stream's last event or an error's body said

    @property
    def bad(self) -> bool:
        return self.status >= 500 or self.failed


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # transport errors on our side
    wall: float = 0.0  # the measured span, in seconds
    responses: int = 0  # completed (or dropped) streams that ended within it
    took: list[float] = field(default_factory=list)  # each completed one's time, in it
    cpu: dict[str, float] = field(default_factory=dict)  # seconds per part, bench.cpu_clocks
    loom_processes: dict[int, float] = field(default_factory=dict)  # CPU s per Loom pid
    connections: dict[int, int] = field(default_factory=dict)  # ours per Loom pid, at the end
    per_second: list[int] = field(default_factory=list)  # responses in each second of it

    @property
    def rps(self) -> float:
        return self.responses / self.wall if self.wall else 0.0

    def busy(self, part: str) -> float:
        """`part`'s CPU over the span, in cores."""
        return self.cpu.get(part, 0.0) / self.wall if self.wall else 0.0


async def stream_once(client: Client, request: bytes, drop: bool) -> Outcome:
    start = time.perf_counter()
    async with asyncio.timeout(120):
        answer = await client.send(
            request, marker=DELTA, end_marker=COMPLETED, watch=(FAILED,), stop_at_marker=drop
        )
    outcome = Outcome(status=answer.status, dropped=drop, ended_at=time.perf_counter())
    if answer.status != 200:
        outcome.detail = answer.head[:300]
        return outcome
    if found := RESPONSE_ID.search(answer.head):
        outcome.response_id = found.group(1).decode()
    if drop and answer.first_at is None:
        outcome.dropped = False  # the stream ended before its first delta
    outcome.completed = answer.ended and not outcome.dropped
    outcome.failed = FAILED in answer.seen
    if outcome.failed:
        at = answer.last.find(b'"error":{')
        outcome.detail = answer.last[max(0, at) :][:300]
    outcome.took = outcome.ended_at - start
    return outcome


async def run_load(
    base_url: str,
    bodies: list[bytes],
    requests: int,
    seconds: float,
    drop: float = 0.0,
    seed: int = 16,
) -> Run:
    """`len(bodies)` clients (client i always sends bodies[i]) send streams back to back
    until `requests` were sent or `seconds` passed; each is dropped with chance `drop`.
    Each client is a `bench.client.Client` (one keep-alive connection, requests encoded
    once, answers parsed by httptools and only scanned for markers), so the load generator
    costs far less CPU than what it measures."""
    run = Run()
    remaining = requests
    rng = random.Random(seed)
    url = f"{base_url}/v1/responses"
    requests_raw = [encode_request(url, body) for body in bodies]
    clients = [Client.for_url(base_url) for _ in bodies]

    async def client(http: Client, request: bytes) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                run.outcomes.append(await stream_once(http, request, rng.random() < drop))
            except (HttpError, OSError, TimeoutError) as exc:
                run.errors.append(f"{type(exc).__name__}: {exc}")

    deadline = time.perf_counter() + seconds
    start, cpu = time.perf_counter(), time.process_time()
    try:
        await asyncio.gather(
            *(client(http, raw) for http, raw in zip(clients, requests_raw, strict=True))
        )
    finally:
        run.wall = time.perf_counter() - start
        run.cpu["load generator"] = time.process_time() - cpu
        for http in clients:
            http.close()
    run.responses = sum(o.completed or o.dropped for o in run.outcomes)
    run.took = [o.took for o in run.outcomes if o.completed]
    return run


async def run_window(
    base_url: str, bodies: list[bytes], warmup: float, seconds: float, clocks: ClockReader
) -> Run:
    """`len(bodies)` clients send streams back to back, each on its one connection; after
    `warmup` seconds of that, the clock starts and runs for `seconds`. Only the streams
    that end within that window count, and the CPU clocks are read at its two ends, so
    neither the connections' opening nor the last streams' drain (fewer clients in flight)
    weighs on the figures. The clients go on until the window ends, then finish what they
    sent.

    The clients start one by one over the first half of the warm-up: uvicorn's workers
    share one listening socket, and connections opened all at once mostly go to the worker
    that wakes first (44 to 62 of 128 for the other one in six runs), while under load the
    less busy one accepts first (52 to 63 of 128 in four runs)."""
    run = Run()
    url = f"{base_url}/v1/responses"
    requests_raw = [encode_request(url, body) for body in bodies]
    clients = [Client.for_url(base_url) for _ in bodies]
    stopping = False

    async def client(http: Client, request: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        while not stopping:
            try:
                run.outcomes.append(await stream_once(http, request, drop=False))
            except (HttpError, OSError, TimeoutError) as exc:
                run.errors.append(f"{type(exc).__name__}: {exc}")

    ramp = warmup / 2 / len(clients)
    load = asyncio.gather(
        *(
            client(http, raw, n * ramp)
            for n, (http, raw) in enumerate(zip(clients, requests_raw, strict=True))
        )
    )
    try:
        await asyncio.sleep(warmup)
        first, start = clocks(), time.perf_counter()
        await asyncio.sleep(seconds)
        last, end = clocks(), time.perf_counter()
        run.connections = last.connections
        stopping = True
        await load
    finally:
        stopping = True
        for http in clients:
            http.close()
    run.wall = end - start
    run.cpu = last.clocks.since(first.clocks)
    run.loom_processes = last.clocks.loom_processes_since(first.clocks)
    counted = [o for o in run.outcomes if start <= o.ended_at < end and o.completed]
    run.responses = len(counted)
    run.took = [o.took for o in counted]
    run.per_second = [0] * max(1, int(run.wall))
    for outcome in counted:
        run.per_second[min(len(run.per_second) - 1, int(outcome.ended_at - start))] += 1
    return run


def stream_body(conversation: str | None = None) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "input": PROMPT, "stream": True}
    if conversation is not None:
        body["conversation"] = conversation
    return orjson.dumps(body)
