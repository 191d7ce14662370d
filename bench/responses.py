"""What Loom adds over its upstream: `POST /v1/responses` against a direct upstream call.

    .venv/bin/python -m bench.responses            # default run, about 2-3 minutes
    .venv/bin/python -m bench.responses --quick    # smoke run, under 30 seconds
    .venv/bin/python -m bench.responses --concurrency 1,32,128,512 --requests 2000

Three processes take part, so that none shares another's event loop:
- a fast fake OpenAI-compatible upstream on loopback (`bench.fake_upstream`), which
  streams 64 small content chunks, a finish chunk and a usage chunk per completion;
- Loom (`python -m loom.cli serve`), with that upstream as its `openai` provider and a
  fresh SQLite database in a temporary directory;
- this process, the load generator: `httpx.AsyncClient`, N concurrent clients.

For every concurrency level it measures, for both calling the upstream's
`/v1/chat/completions` directly and calling Loom's `/v1/responses` with
`openai/bench-model` (default `store`, i.e. true):
- non-streaming: p50 / p99 latency and requests per second;
- streaming: p50 / p99 time to first token (the first content chunk from the upstream,
  the first `response.output_text.delta` event from Loom), p50 / p99 total time, and
  responses per second;
- Loom's CPU time per response (from /proc/<pid>/stat, before and after each phase).
Then one extra phase, streaming with `store: false` at 32 clients, shows what storage costs.

Each phase is preceded by a warm-up at the same concurrency (which also opens the
connections) and is bounded both in requests and in seconds, so the run time stays
bounded whatever Loom's speed. The load generator's own CPU use is shown too: near 100%
of a core means the figures are bounded by the client, not by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from bench.fake_upstream import CHUNKS, TEXT
from bench.harness import Service, StartupError, spawn_loom, spawn_upstream, wait_ready

PROMPT = "Say something."
JSON_HEADERS = {"Content-Type": "application/json"}


class BenchError(Exception):
    """A request did not get the answer the benchmark expects."""


# -- what to call ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One endpoint under load, with its request bodies and stream markers."""

    name: str
    url: str
    plain_body: bytes
    stream_body: bytes
    first_token: bytes  # the bytes that announce the first token in the stream
    stream_end: bytes  # the bytes that announce a complete stream


def direct_target(upstream: Service) -> Target:
    body = {"model": "bench-model", "messages": [{"role": "user", "content": PROMPT}]}
    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    return Target(
        name="direct",
        url=f"{upstream.base_url}/v1/chat/completions",
        plain_body=orjson.dumps(body),
        stream_body=orjson.dumps(stream),
        first_token=b'"content":"',  # the fake upstream never sends empty content
        stream_end=b"data: [DONE]",
    )


def loom_target(loom: Service, store: bool = True) -> Target:
    body = {"model": "openai/bench-model", "input": PROMPT}
    if not store:
        body["store"] = False
    return Target(
        name="Loom" if store else "Loom store=false",
        url=f"{loom.base_url}/v1/responses",
        plain_body=orjson.dumps(body),
        stream_body=orjson.dumps({**body, "stream": True}),
        first_token=b"event: response.output_text.delta",
        stream_end=b"event: response.completed",
    )


# -- one request ----------------------------------------------------------------------------


class MarkerScan:
    """Finds a byte marker in a stream of blocks, also when it straddles two blocks."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.found = False
        self._tail = b""

    def feed(self, block: bytes) -> bool:
        if not self.found:
            data = self._tail + block
            self.found = self.marker in data
            self._tail = data[-(len(self.marker) - 1) :]
        return self.found


def _fail(target: Target, status: int, body: bytes) -> BenchError:
    return BenchError(f"{target.name}: HTTP {status}: {body[:500].decode(errors='replace')}")


async def plain_request(client: httpx.AsyncClient, target: Target) -> tuple[float, None]:
    """One non-streaming request; returns (latency, None)."""
    start = time.perf_counter()
    response = await client.post(target.url, content=target.plain_body, headers=JSON_HEADERS)
    latency = time.perf_counter() - start
    if response.status_code != 200:
        raise _fail(target, response.status_code, response.content)
    return latency, None


async def stream_request(client: httpx.AsyncClient, target: Target) -> tuple[float, float]:
    """One streaming request; returns (total time, time to first token)."""
    start = time.perf_counter()
    first, end = MarkerScan(target.first_token), MarkerScan(target.stream_end)
    ttft = None
    async with client.stream(
        "POST", target.url, content=target.stream_body, headers=JSON_HEADERS
    ) as response:
        if response.status_code != 200:
            raise _fail(target, response.status_code, await response.aread())
        async for block in response.aiter_raw():
            if ttft is None and first.feed(block):
                ttft = time.perf_counter() - start
            end.feed(block)
    total = time.perf_counter() - start
    if ttft is None or not end.found:
        raise BenchError(f"{target.name}: stream ended without a token or its end marker")
    return total, ttft


# -- a phase: many requests at a given concurrency ------------------------------------------


Request = Callable[[httpx.AsyncClient, Target], Awaitable[tuple[float, float | None]]]


@dataclass
class Phase:
    """The outcome of one phase: sorted latencies and times to first token, plus costs."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    loom_cpu: float | None = None  # seconds, over the whole phase
    client_cpu: float = 0.0  # seconds, over the whole phase

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.count / self.wall if self.wall else 0.0

    def loom_cpu_ms_per_response(self) -> float | None:
        if self.loom_cpu is None or not self.count:
            return None
        return self.loom_cpu / self.count * 1000

    def client_busy(self) -> float:
        return self.client_cpu / self.wall if self.wall else 0.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values, in milliseconds."""
    if not values:
        return None
    rank = max(0, min(len(values) - 1, round(q / 100 * len(values) + 0.5) - 1))
    return values[rank] * 1000


async def run_phase(
    client: httpx.AsyncClient,
    target: Target,
    request: Request,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    loom: Service | None = None,
) -> Phase:
    """`concurrency` clients send requests back to back until either bound is reached."""
    phase = Phase()
    remaining = max_requests
    deadline = time.perf_counter() + max_seconds

    async def client_loop() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                latency, ttft = await request(client, target)
            except (BenchError, httpx.HTTPError) as exc:
                phase.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            phase.latencies.append(latency)
            if ttft is not None:
                phase.ttfts.append(ttft)

    cpu_before = loom.cpu_seconds() if loom else None
    client_before = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    phase.wall = time.perf_counter() - start
    phase.client_cpu = time.process_time() - client_before
    if loom and cpu_before is not None:
        phase.loom_cpu = loom.cpu_seconds() - cpu_before
    phase.latencies.sort()
    phase.ttfts.sort()
    return phase


async def measure(
    client: httpx.AsyncClient,
    target: Target,
    stream: bool,
    concurrency: int,
    settings: Settings,
    loom: Service | None = None,
) -> Phase:
    """A warm-up at the same concurrency, then the measured phase."""
    request = stream_request if stream else plain_request
    warmup = max(20, concurrency)
    await run_phase(client, target, request, concurrency, warmup, settings.max_seconds / 2)
    phase = await run_phase(
        client, target, request, concurrency, settings.requests, settings.max_seconds, loom
    )
    kind = "streaming" if stream else "non-streaming"
    errors = f", {len(phase.errors)} errors" if phase.errors else ""
    print(
        f"  {target.name:>16} {kind:>13} x{concurrency:<4} {phase.count:5d} requests "
        f"in {phase.wall:5.2f}s{errors}",
        file=sys.stderr,
        flush=True,
    )
    return phase


# -- checking the endpoints answer what we expect -------------------------------------------


def _sse_events(raw: bytes) -> list[dict]:
    events = []
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                events.append(orjson.loads(line[6:]))
    return events


async def validate_loom(client: httpx.AsyncClient, target: Target) -> list[str]:
    """One request of each kind, fully parsed. Raises on a broken endpoint; returns warnings."""
    warnings = []
    response = await client.post(target.url, content=target.plain_body, headers=JSON_HEADERS)
    if response.status_code != 200:
        raise _fail(target, response.status_code, response.content)
    body = response.json()
    texts = [
        part.get("text", "")
        for item in body.get("output", [])
        if item.get("type") == "message"
        for part in item.get("content", [])
    ]
    if "".join(texts) != TEXT:
        warnings.append(f"non-streaming output text differs from the upstream's: {texts!r:.200}")

    async with client.stream(
        "POST", target.url, content=target.stream_body, headers=JSON_HEADERS
    ) as stream:
        raw = await stream.aread()
    if stream.status_code != 200:
        raise _fail(target, stream.status_code, raw)
    events = _sse_events(raw)
    types = [event.get("type") for event in events]
    if not types or types[-1] != "response.completed":
        raise BenchError(f"{target.name}: stream does not end with response.completed: {types}")
    deltas = [e.get("delta", "") for e in events if e.get("type") == "response.output_text.delta"]
    if len(deltas) != CHUNKS or "".join(deltas) != TEXT:
        warnings.append(f"streamed {len(deltas)} text deltas for {CHUNKS} upstream chunks")
    return warnings


# -- the report -----------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


def _cells(direct: Phase, loom: Phase, metric: str) -> tuple[str, str, str]:
    """(direct, Loom, ratio) for one metric: the ratio is Loom/direct except for rates."""
    if metric == "rps":
        return f"{direct.rps:.0f}", f"{loom.rps:.0f}", _ratio(direct.rps, loom.rps)
    if metric == "loom_cpu":
        return "", _ms(loom.loom_cpu_ms_per_response()), ""
    if metric == "client_busy":
        return f"{direct.client_busy():.0%}", f"{loom.client_busy():.0%}", ""
    if metric == "errors":
        return str(len(direct.errors)), str(len(loom.errors)), ""
    values, q = metric.split("_p")
    d = percentile(getattr(direct, values), float(q))
    lo = percentile(getattr(loom, values), float(q))
    return _ms(d), _ms(lo), _ratio(lo, d)


PLAIN_ROWS = [
    ("latency p50 (ms)", "latencies_p50"),
    ("latency p99 (ms)", "latencies_p99"),
    ("requests/s [ratio direct/Loom]", "rps"),
    ("Loom CPU per response (ms)", "loom_cpu"),
    ("load generator CPU (% of a core)", "client_busy"),
]
STREAM_ROWS = [
    ("first token p50 (ms)", "ttfts_p50"),
    ("first token p99 (ms)", "ttfts_p99"),
    ("total time p50 (ms)", "latencies_p50"),
    ("total time p99 (ms)", "latencies_p99"),
    ("responses/s [ratio direct/Loom]", "rps"),
    ("Loom CPU per response (ms)", "loom_cpu"),
    ("load generator CPU (% of a core)", "client_busy"),
]
LABEL_WIDTH = 34
CELL = "{:>8}{:>8}{:>8}  "


def print_table(results: dict, levels: list[int]) -> None:
    """results[(stream, concurrency)] = (direct Phase, Loom Phase)."""
    print()
    print("Loom POST /v1/responses vs the upstream's /v1/chat/completions called directly")
    print("ratio = Loom/direct (1.00x = no overhead), except rates: direct/Loom")
    header = "".join(f"{f'{c} client' + ('s' if c > 1 else ''):^24}  " for c in levels)
    print(" " * LABEL_WIDTH + header)
    print(" " * LABEL_WIDTH + CELL.format("direct", "Loom", "ratio") * len(levels))
    for stream, title, rows in (
        (False, "non-streaming", PLAIN_ROWS),
        (True, "streaming", STREAM_ROWS),
    ):
        print(title)
        has_errors = any(
            d.errors or lo.errors for (s, _), (d, lo) in results.items() if s == stream
        )
        for label, metric in rows + ([("errors", "errors")] if has_errors else []):
            cells = "".join(CELL.format(*_cells(*results[stream, c], metric)) for c in levels)
            print(f"  {label:<{LABEL_WIDTH - 2}}" + cells)


def print_store_false(stored: Phase, unstored: Phase, concurrency: int) -> None:
    def summary(phase: Phase) -> str:
        return (
            f"first token p50 {_ms(percentile(phase.ttfts, 50))} ms, "
            f"total p50 {_ms(percentile(phase.latencies, 50))} / "
            f"p99 {_ms(percentile(phase.latencies, 99))} ms, {phase.rps:.0f} responses/s, "
            f"Loom CPU {_ms(phase.loom_cpu_ms_per_response())} ms/response"
        )

    print()
    print(f"storage cost, streaming, {concurrency} clients:")
    print(f"  store=false: {summary(unstored)}")
    print(f"  store=true:  {summary(stored)}")


def print_errors(phases: list[Phase]) -> None:
    errors = [error for phase in phases for error in phase.errors]
    if errors:
        print(f"\n{len(errors)} failed requests; first: {errors[0]}")


# -- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    levels: list[int]
    requests: int
    max_seconds: float
    store_false_concurrency: int = 32


def _client(concurrency: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=httpx.Timeout(120.0, connect=10.0),
        trust_env=False,
    )


async def run(upstream: Service, loom: Service, settings: Settings) -> int:
    direct, via_loom = direct_target(upstream), loom_target(loom)
    pool = max([*settings.levels, settings.store_false_concurrency])
    async with _client(pool) as direct_client, _client(pool) as loom_client:
        try:
            warnings = await validate_loom(loom_client, via_loom)
        except (BenchError, httpx.HTTPError, ValueError) as exc:
            print(f"Loom's /v1/responses is broken: {type(exc).__name__}: {exc}")
            print("--- Loom log tail ---\n" + loom.log_tail())
            return 1
        for warning in warnings:
            print(f"warning: {warning}")

        results: dict[tuple[bool, int], tuple[Phase, Phase]] = {}
        for concurrency in settings.levels:
            for stream in (False, True):
                d = await measure(direct_client, direct, stream, concurrency, settings)
                lo = await measure(loom_client, via_loom, stream, concurrency, settings, loom)
                results[stream, concurrency] = (d, lo)

        level = settings.store_false_concurrency
        unstored = await measure(
            loom_client, loom_target(loom, store=False), True, level, settings, loom
        )
        stored = results.get((True, level), (None, None))[1]
        if stored is None:
            stored = await measure(loom_client, via_loom, True, level, settings, loom)

    print_table(results, settings.levels)
    print_store_false(stored, unstored, level)
    print_errors([p for pair in results.values() for p in pair] + [unstored])
    return 0


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.responses", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--concurrency", default="1,32,128", help="comma-separated client counts (1,32,128)"
    )
    parser.add_argument("--requests", type=int, help="most requests per measured phase (1500)")
    parser.add_argument("--max-seconds", type=float, help="most seconds per phase (7)")
    parser.add_argument("--quick", action="store_true", help="a smoke run under 30 seconds")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        parser.error("--concurrency takes positive integers, e.g. 1,32,128")
    requests = args.requests or (300 if args.quick else 1500)
    max_seconds = args.max_seconds or (1.0 if args.quick else 7.0)
    return Settings(levels=levels, requests=requests, max_seconds=max_seconds)


def _event_loop_runner() -> Callable:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    started = time.monotonic()
    services: list[Service] = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
        try:
            upstream = spawn_upstream(Path(tmp))
            services.append(upstream)
            wait_ready(upstream)
            loom = spawn_loom(upstream, Path(tmp))
            services.append(loom)
            wait_ready(loom)
            print(
                f"fake upstream pid {upstream.proc.pid}, Loom pid {loom.proc.pid}, "
                f"{os.cpu_count()} CPUs; up to {settings.requests} requests "
                f"or {settings.max_seconds:g}s per phase",
                file=sys.stderr,
            )
            code = _event_loop_runner()(run(upstream, loom, settings))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            code = 130
        except StartupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 1
        finally:
            for service in reversed(services):
                service.stop()
    print(f"\n(run took {time.monotonic() - started:.0f}s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
