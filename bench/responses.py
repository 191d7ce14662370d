"""What Loom adds over its upstream: `POST /v1/responses` against a direct upstream call.

    .venv/bin/python -m bench.responses            # default run (c=1,32,128,512), ~3 minutes
    .venv/bin/python -m bench.responses --quick    # smoke run, under a minute
    .venv/bin/python -m bench.responses --concurrency 1,128 --requests 2000

Three processes take part, so that none shares another's event loop:
- a fast fake OpenAI-compatible upstream on loopback (`bench.fake_upstream`), which
  streams 64 small content chunks, a finish chunk and a usage chunk per completion;
- Loom (`loom serve`, i.e. `loom.cli.main`), with that upstream as its `openai` provider,
  local models off and a fresh SQLite database in a temporary directory;
- this process, the load generator (`bench.client`): N simulated clients, each with one
  keep-alive connection, pre-encoded requests and a C HTTP parser, so that it costs far
  less than what it measures. The direct figures use the very same client.

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
import math
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

from bench.client import Client, HttpError, encode_request
from bench.fake_upstream import CHUNKS, TEXT
from bench.harness import (
    Service,
    StartupError,
    machine_busy_seconds,
    run_loop,
    spawn_loom,
    spawn_upstream,
    wait_ready,
    wait_settled,
)

PROMPT = "Say something."
JSON_HEADERS = {"Content-Type": "application/json"}
_EXTRA_HEADERS: dict[str, str] = {}  # sent by the load generator (Authorization with --auth)
BENCH_KEY = "sk-bench-key"


@dataclass(frozen=True)
class Settings:
    """The run's shape: concurrency levels and the bounds of each phase."""

    levels: list[int]
    requests: int  # at most this many requests per measured phase...
    max_seconds: float  # ...and no new request after this many seconds
    store_false_concurrency: int = 32
    auth: bool = False  # Loom with an API key configured, and every request sending it
    max_inflight: int | None = None  # Loom's LOOM_MAX_INFLIGHT_TURNS (its default if None)


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

    @property
    def plain_request(self) -> bytes:
        return encode_request(self.url, self.plain_body, _EXTRA_HEADERS)

    @property
    def stream_request(self) -> bytes:
        return encode_request(self.url, self.stream_body, _EXTRA_HEADERS)


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


class Refused(BenchError):
    """Loom answered 429: it is at its limit of turns in flight (`--max-inflight`)."""


RETRY_AFTER = 1.0  # what Loom's 429 says; a refused client waits this long, as SDKs do


def _fail(target: Target, status: int, body: bytes) -> BenchError:
    if status == 429:
        return Refused(f"{target.name}: HTTP 429")
    return BenchError(f"{target.name}: HTTP {status}: {body[:500].decode(errors='replace')}")


async def plain_request(client: Client, target: Target, raw: bytes) -> tuple[float, None]:
    """One non-streaming request; returns (latency, None)."""
    start = time.perf_counter()
    answer = await client.send(raw)
    latency = time.perf_counter() - start
    if answer.status != 200:
        raise _fail(target, answer.status, b"".join(answer.body))
    return latency, None


async def stream_request(client: Client, target: Target, raw: bytes) -> tuple[float, float]:
    """One streaming request; returns (total time, time to first token)."""
    start = time.perf_counter()
    answer = await client.send(raw, marker=target.first_token, end_marker=target.stream_end)
    total = time.perf_counter() - start
    if answer.status != 200:
        raise _fail(target, answer.status, b"".join(answer.body))
    if answer.first_at is None or not answer.ended:
        raise BenchError(f"{target.name}: stream ended without a token or its end marker")
    return total, answer.first_at - start


# -- a phase: many requests at a given concurrency ------------------------------------------


Request = Callable[[Client, Target, bytes], Awaitable[tuple[float, float | None]]]


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds used so far by Loom, the fake upstream, this process and the machine."""

    loom: float
    upstream: float
    client: float
    machine: float

    @classmethod
    def read(cls, loom: Service, upstream: Service) -> CpuClock:
        return cls(
            loom.cpu_seconds(), upstream.cpu_seconds(), time.process_time(), machine_busy_seconds()
        )


@dataclass
class Phase:
    """The outcome of one phase: sorted latencies and times to first token, plus CPU use."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refused: int = 0  # 429s from Loom's turn limit (not errors: the limit at work)
    wall: float = 0.0
    loom_cpu: float = 0.0  # seconds over the phase
    client_cpu: float = 0.0  # seconds over the phase
    other_cpu: float = 0.0  # seconds used by every other process on the machine

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.count / self.wall if self.wall else 0.0

    def loom_cpu_ms_per_response(self) -> float | None:
        return self.loom_cpu / self.count * 1000 if self.count else None

    def client_busy(self) -> float:
        """The load generator's CPU use, as a fraction of one core."""
        return self.client_cpu / self.wall if self.wall else 0.0

    def other_busy(self) -> float:
        """Other processes' CPU use, in cores: the noise from sharing the machine."""
        return max(0.0, self.other_cpu / self.wall) if self.wall else 0.0

    def record_cpu(self, before: CpuClock, after: CpuClock) -> None:
        self.loom_cpu = after.loom - before.loom
        self.client_cpu = after.client - before.client
        ours = self.loom_cpu + self.client_cpu + after.upstream - before.upstream
        self.other_cpu = after.machine - before.machine - ours


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (seconds), in milliseconds."""
    if not values:
        return None
    rank = min(len(values), max(1, math.ceil(q / 100 * len(values))))
    return values[rank - 1] * 1000


async def run_phase(
    clients: list[Client],
    target: Target,
    request: Request,
    max_requests: int,
    max_seconds: float,
) -> Phase:
    """Each client sends requests back to back until either bound is reached."""
    phase = Phase()
    remaining = max_requests
    deadline = time.perf_counter() + max_seconds

    raw = target.plain_request if request is plain_request else target.stream_request

    async def client_loop(client: Client) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                latency, ttft = await request(client, target, raw)
            except Refused:
                phase.refused += 1
                await asyncio.sleep(RETRY_AFTER)
                continue
            except (BenchError, HttpError, OSError) as exc:
                phase.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            phase.latencies.append(latency)
            if ttft is not None:
                phase.ttfts.append(ttft)

    start = time.perf_counter()
    await asyncio.gather(*(client_loop(client) for client in clients))
    phase.wall = time.perf_counter() - start
    phase.latencies.sort()
    phase.ttfts.sort()
    return phase


class Bench:
    """What every measurement needs: the services, the run's bounds, and the HTTP clients.

    Each simulated client is its own `bench.client.Client` with one keep-alive connection.
    """

    def __init__(self, loom: Service, upstream: Service, settings: Settings) -> None:
        self.loom, self.upstream, self.settings = loom, upstream, settings
        self._clients: dict[str, list[Client]] = {}

    def clients(self, target: Target, count: int) -> list[Client]:
        pool = self._clients.setdefault(target.name, [])
        while len(pool) < count:
            pool.append(Client.for_url(target.url))
        return pool[:count]

    async def aclose(self) -> None:
        for pool in self._clients.values():
            for client in pool:
                client.close()

    async def measure(self, target: Target, stream: bool, concurrency: int) -> Phase:
        """A warm-up at the same concurrency (it also opens the connections), then the
        measured phase."""
        request = stream_request if stream else plain_request
        clients = self.clients(target, concurrency)
        max_seconds = self.settings.max_seconds
        await run_phase(clients, target, request, max(10, concurrency), max_seconds / 2)
        before = CpuClock.read(self.loom, self.upstream)
        phase = await run_phase(clients, target, request, self.settings.requests, max_seconds)
        phase.record_cpu(before, CpuClock.read(self.loom, self.upstream))
        self._progress(target, stream, concurrency, phase)
        return phase

    @staticmethod
    def _progress(target: Target, stream: bool, concurrency: int, phase: Phase) -> None:
        kind = "streaming" if stream else "non-streaming"
        errors = f", {len(phase.errors)} errors" if phase.errors else ""
        errors += f", {phase.refused} refused (429)" if phase.refused else ""
        print(
            f"  {target.name:>16} {kind:>13} x{concurrency:<4} {phase.count:5d} requests "
            f"in {phase.wall:5.2f}s; other processes used {phase.other_busy():.2f} cores" + errors,
            file=sys.stderr,
            flush=True,
        )


# -- checking the endpoints answer what we expect -------------------------------------------


def _sse_events(raw: bytes) -> list[dict]:
    events = []
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                events.append(orjson.loads(line[6:]))
    return events


async def validate_loom(target: Target) -> list[str]:
    """One request of each kind, fully parsed. Raises on a broken endpoint; returns warnings."""
    warnings = []
    client = httpx.AsyncClient(timeout=120.0, trust_env=False)
    try:
        return await _validate(client, target, warnings)
    finally:
        await client.aclose()


async def _validate(client: httpx.AsyncClient, target: Target, warnings: list[str]) -> list[str]:
    headers = {**JSON_HEADERS, **_EXTRA_HEADERS}
    response = await client.post(target.url, content=target.plain_body, headers=headers)
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
        "POST", target.url, content=target.stream_body, headers=headers
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


def _cells(direct: Phase, loom: Phase, metric: str, concurrency: int) -> tuple[str, str, str]:
    """(direct, Loom, ratio) for one metric: the ratio is Loom/direct except for rates."""
    if metric == "loom_cpu":
        return "", _ms(loom.loom_cpu_ms_per_response()), ""
    if metric == "client_busy":
        return f"{direct.client_busy():.0%}", f"{loom.client_busy():.0%}", ""
    if metric == "other_busy":
        return f"{direct.other_busy():.2f}", f"{loom.other_busy():.2f}", ""
    if metric == "errors":
        return str(len(direct.errors)), str(len(loom.errors)), ""
    if metric == "refused":
        return "", str(loom.refused), ""
    mark = "*" if concurrency > 1 and direct.client_busy() >= CLIENT_BOUND else ""
    if metric == "rps":
        return f"{direct.rps:.0f}{mark}", f"{loom.rps:.0f}", _ratio(direct.rps, loom.rps)
    values, q = metric.split("_p")
    d = percentile(getattr(direct, values), float(q))
    lo = percentile(getattr(loom, values), float(q))
    return _ms(d) + mark, _ms(lo), _ratio(lo, d)


PLAIN_ROWS = [
    ("latency p50 (ms)", "latencies_p50"),
    ("latency p99 (ms)", "latencies_p99"),
    ("requests/s [ratio direct/Loom]", "rps"),
    ("Loom CPU per response (ms)", "loom_cpu"),
    ("load generator CPU (% of a core)", "client_busy"),
    ("other processes' CPU (cores)", "other_busy"),
]
STREAM_ROWS = [
    ("first token p50 (ms)", "ttfts_p50"),
    ("first token p99 (ms)", "ttfts_p99"),
    ("total time p50 (ms)", "latencies_p50"),
    ("total time p99 (ms)", "latencies_p99"),
    ("responses/s [ratio direct/Loom]", "rps"),
    ("Loom CPU per response (ms)", "loom_cpu"),
    ("load generator CPU (% of a core)", "client_busy"),
    ("other processes' CPU (cores)", "other_busy"),
]
CLIENT_BOUND = 0.85  # the load generator's CPU use above which a direct figure is marked
NOISE_CORES = 0.2  # other processes' average CPU use above which the report warns
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
        has_refused = any(lo.refused for (s, _), (_, lo) in results.items() if s == stream)
        extra = [("errors", "errors")] if has_errors else []
        extra += [("refused at the turn limit (429)", "refused")] if has_refused else []
        for label, metric in rows + extra:
            cells = "".join(CELL.format(*_cells(*results[stream, c], metric, c)) for c in levels)
            print(f"  {label:<{LABEL_WIDTH - 2}}" + cells)
    if any(c > 1 and d.client_busy() >= CLIENT_BOUND for (_, c), (d, _) in results.items()):
        print(
            f"* the load generator was >= {CLIENT_BOUND:.0%} busy: this direct figure is bounded"
            "\n  by the client (queueing in this process), so its ratio understates Loom's cost"
        )


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


def print_caveats(phases: list[Phase], loom: Service) -> None:
    """Failed requests, problems in Loom's log, and noise from other processes."""
    errors = [error for phase in phases for error in phase.errors]
    if errors:
        print(f"\n{len(errors)} failed requests; first: {errors[0]}")
    problems = [
        line
        for line in loom.log_tail(lines=100_000).splitlines()
        if any(word in line for word in ("ERROR", "Traceback", "WARNING"))
    ]
    if problems:
        print(f"\nLoom logged {len(problems)} warning/error lines; first: {problems[0]}")
    other = max(phase.other_busy() for phase in phases)
    if other > NOISE_CORES:
        print(
            f"\nnote: other processes on this machine used up to {other:.2f} of "
            f"{os.cpu_count()} cores during a phase; the figures are noisier for it"
        )


# -- the run --------------------------------------------------------------------------------


async def run(upstream: Service, loom: Service, settings: Settings) -> int:
    bench = Bench(loom, upstream, settings)
    try:
        return await measure_all(bench, direct_target(upstream), loom_target(loom))
    finally:
        await bench.aclose()


async def measure_all(bench: Bench, direct: Target, via_loom: Target) -> int:
    """Check Loom answers, measure every phase, print the report; returns the exit code."""
    try:
        warnings = await validate_loom(via_loom)
    except (BenchError, httpx.HTTPError, ValueError) as exc:
        print(f"Loom's /v1/responses is broken: {type(exc).__name__}: {exc}")
        print("--- Loom log tail ---\n" + bench.loom.log_tail())
        return 1
    for warning in warnings:
        print(f"warning: {warning}")

    results: dict[tuple[bool, int], tuple[Phase, Phase]] = {}
    for concurrency in bench.settings.levels:
        for stream in (False, True):
            results[stream, concurrency] = (
                await bench.measure(direct, stream, concurrency),
                await bench.measure(via_loom, stream, concurrency),
            )
    level = bench.settings.store_false_concurrency
    unstored = await bench.measure(loom_target(bench.loom, store=False), True, level)
    stored = results[True, level][1] if (True, level) in results else None
    stored = stored or await bench.measure(via_loom, True, level)

    print_table(results, bench.settings.levels)
    print_store_false(stored, unstored, level)
    print_caveats([p for pair in results.values() for p in pair] + [unstored], bench.loom)
    print_acceptance(results)
    return 0


def print_acceptance(results: dict[tuple[bool, int], tuple[Phase, Phase]]) -> None:
    """Issue 16's targets, each beside the figure this run measured."""
    rows = []
    if (True, 128) in results:
        loom = results[True, 128][1]
        cpu = loom.loom_cpu_ms_per_response() or 0.0
        rows.append(("streaming c=128: >= 300 responses/s", f"{loom.rps:.0f}/s", loom.rps >= 300))
        rows.append(("streaming c=128: <= 4 ms Loom CPU per response", f"{cpu:.2f} ms", cpu <= 4))
        rows.append(("streaming c=128: 0 errors", str(len(loom.errors)), not loom.errors))
    if (True, 1) in results:
        direct, loom = results[True, 1]
        added = (percentile(loom.ttfts, 50) or 0) - (percentile(direct.ttfts, 50) or 0)
        rows.append(("added time to first token c=1: <= 2 ms p50", f"{added:.2f} ms", added <= 2))
    if (True, 512) in results:
        loom = results[True, 512][1]
        ttft = percentile(loom.ttfts, 50) or math.inf
        rows.append(("streaming c=512: p50 first token <= 100 ms", f"{_ms(ttft)} ms", ttft <= 100))
        rows.append(("streaming c=512: 0 errors", str(len(loom.errors)), not loom.errors))
    if (False, 128) in results:
        loom = results[False, 128][1]
        rps = loom.rps
        rows.append(("non-streaming c=128: >= 400 requests/s", f"{rps:.0f}/s", rps >= 400))
    if rows:
        print("\nissue 16 targets (one Loom process, this machine, this run):")
        for label, value, ok in rows:
            print(f"  {'met ' if ok else 'MISS'}  {label:<50}{value:>10}")


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.responses", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--concurrency",
        default="1,32,128,512",
        help="comma-separated client counts (1,32,128,512)",
    )
    parser.add_argument("--requests", type=int, help="most requests per measured phase (2000)")
    parser.add_argument("--max-seconds", type=float, help="most seconds per phase (8)")
    parser.add_argument("--quick", action="store_true", help="a smoke run under 30 seconds")
    parser.add_argument(
        "--auth", action="store_true", help="run Loom with an API key and send it (auth cost)"
    )
    parser.add_argument(
        "--max-inflight",
        type=int,
        help="Loom's limit of turns in flight (LOOM_MAX_INFLIGHT_TURNS): past it clients get "
        "a 429 and wait its Retry-After; the report counts them apart from errors",
    )
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        parser.error("--concurrency takes positive integers, e.g. 1,32,128")
    requests = args.requests or (300 if args.quick else 2000)
    max_seconds = args.max_seconds or (0.8 if args.quick else 8.0)
    return Settings(
        levels=levels,
        requests=requests,
        max_seconds=max_seconds,
        auth=args.auth,
        max_inflight=args.max_inflight,
    )


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
            extra_env = {}
            if settings.auth:  # every request carries the key; the fake upstream ignores it
                extra_env["LOOM_API_KEYS"] = f"{BENCH_KEY}=bench"
                _EXTRA_HEADERS["Authorization"] = f"Bearer {BENCH_KEY}"
            if settings.max_inflight is not None:
                extra_env["LOOM_MAX_INFLIGHT_TURNS"] = str(settings.max_inflight)
            loom = spawn_loom(upstream, Path(tmp), extra_env)
            services.append(loom)
            wait_ready(loom)
            settling = wait_settled(loom)
            print(
                f"fake upstream pid {upstream.proc.pid}, Loom pid {loom.proc.pid}, "
                f"{os.cpu_count()} CPUs; up to {settings.requests} requests "
                f"or {settings.max_seconds:g}s per phase; Loom's start-up work after it "
                f"answered /v1/health took {settling:.1f}s of CPU (not measured)",
                file=sys.stderr,
            )
            code = run_loop(run(upstream, loom, settings))
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
