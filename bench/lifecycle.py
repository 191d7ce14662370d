"""What background mode costs, and how fast a stream followed on another replica is.

    .venv/bin/python -m bench.lifecycle            # about 2-4 minutes on a busy machine
    .venv/bin/python -m bench.lifecycle --quick    # a smoke run
    .venv/bin/python -m bench.lifecycle --poll     # also: followers polling, no NOTIFY

Processes: the fake upstream (`bench.fake_upstream`), two Loom replicas (`loom serve`) on
one fresh PostgreSQL database (127.0.0.1:5432, or `LOOM_BENCH_PG_URL`), and this load
generator. It measures, on replica A:
- time to first token (first `response.output_text.delta`) of `stream: true` with and
  without `background: true`, one request at a time, alternating; the added TTFT is the
  difference of the medians;
- Loom's CPU per streamed response with and without background (c=8), and the
  PostgreSQL commits per response (from `pg_stat_database`), against the events per
  response: the event log is written in batches, not once per delta;
and across replicas: a background response streams from a paced model (a chunk every
20 ms) on A while a client follows it on B (`GET ...?stream=true&starting_after=N`);
for every event, the delay between its arrival on A's stream and on B's stream.
With `--poll` a third replica follows by polling the event log every 50 ms instead of
LISTEN/NOTIFY, to show why NOTIFY is the default.
The machine is shared: the figures are approximate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import orjson

from bench.harness import Service, spawn_loom, spawn_upstream, wait_ready

PG_URL = os.environ.get("LOOM_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FAST, PACED = "openai/bench-model", "openai/bench-paced"
DELTA = b"response.output_text.delta"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def stream_events(
    client: httpx.AsyncClient, method: str, url: str, body: dict | None = None
) -> list[tuple[float, dict]]:
    """(arrival time, event) for every event of a stream."""
    out: list[tuple[float, dict]] = []
    async with client.stream(method, url, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{method} {url}: {response.status_code} {await response.aread()}")
        buffer = b""
        async for block in response.aiter_bytes():
            now = time.perf_counter()
            buffer += block
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                data = frame[frame.index(b"data: ") + 6 :]
                out.append((now, orjson.loads(data)))
    return out


async def ttft(client: httpx.AsyncClient, loom: Service, background: bool) -> float:
    body = {"model": FAST, "input": "hi", "stream": True, "background": background}
    start = time.perf_counter()
    first = None
    async with client.stream("POST", f"{loom.base_url}/v1/responses", json=body) as response:
        async for block in response.aiter_bytes():
            if first is None and DELTA in block:
                first = time.perf_counter() - start
    if first is None:
        raise RuntimeError("no text delta in the stream")
    return first


async def commits(dsn: str, database: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        query = "SELECT xact_commit FROM pg_stat_database WHERE datname = $1"
        return int(await conn.fetchval(query, database))
    finally:
        await conn.close()


async def cpu_phase(
    loom: Service, background: bool, count: int, dsn: str, database: str
) -> tuple[float, float, float]:
    """(Loom CPU ms per response, PostgreSQL commits per response, events per response)."""
    body = {"model": FAST, "input": "hi", "stream": True, "background": background}
    events_seen = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal events_seen
        while not queue.empty():
            queue.get_nowait()
            got = await stream_events(client, "POST", f"{loom.base_url}/v1/responses", body)
            events_seen += len(got)

    before_cpu, before_commits = loom.cpu_seconds(), await commits(dsn, database)
    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(8)))
    await asyncio.sleep(0.5)  # let the last background runs' final writes land
    cpu = (loom.cpu_seconds() - before_cpu) * 1000 / count
    return cpu, (await commits(dsn, database) - before_commits) / count, events_seen / count


async def cross_replica(a: Service, b: Service, runs: int) -> list[float]:
    """Delays (ms) from an event's arrival on A's stream to its arrival on B's."""
    delays: list[float] = []
    body = {"model": PACED, "input": "hi", "stream": True, "background": True}
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(runs):
            first: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            async def on_a(first=first) -> list[tuple[float, dict]]:
                out: list[tuple[float, dict]] = []
                async with client.stream("POST", f"{a.base_url}/v1/responses", json=body) as r:
                    buffer = b""
                    async for block in r.aiter_bytes():
                        now = time.perf_counter()
                        buffer += block
                        while b"\n\n" in buffer:
                            frame, buffer = buffer.split(b"\n\n", 1)
                            event = orjson.loads(frame[frame.index(b"data: ") + 6 :])
                            out.append((now, event))
                            if not first.done():
                                first.set_result(event["response"]["id"])
                return out

            a_task = asyncio.create_task(on_a())
            response_id = await first
            url = f"{b.base_url}/v1/responses/{response_id}?stream=true&starting_after=1"
            on_b = await stream_events(client, "GET", url)
            on_a_events = await a_task
            seen_a = {e["sequence_number"]: t for t, e in on_a_events}
            # The events B had to wait for: those that reached A after B's stream opened.
            opened = on_b[0][0] if on_b else 0
            for t, event in on_b:
                ta = seen_a.get(event["sequence_number"])
                if ta is not None and ta > opened:
                    delays.append((t - ta) * 1000)
    return delays


async def run(args: argparse.Namespace, services: dict[str, Service], db: str, dsn: str) -> None:
    a, b = services["A"], services["B"]
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(5):  # warm-up: connections, model lists, statement caches
            await ttft(client, a, False)
            await ttft(client, a, True)
        plain, background = [], []
        for _ in range(args.requests):
            plain.append(await ttft(client, a, False) * 1000)
            background.append(await ttft(client, a, True) * 1000)
    p50_plain, p50_bg = statistics.median(plain), statistics.median(background)
    print("\nTime to first token on replica A, one request at a time (ms)")
    print(f"  stream, no background : p50 {p50_plain:6.2f}  p99 {percentile(plain, 99):6.2f}")
    print(f"  stream, background    : p50 {p50_bg:6.2f}  p99 {percentile(background, 99):6.2f}")
    print(f"  added by background   : {p50_bg - p50_plain:+.2f} ms at p50 (goal <= 2 ms)")

    count = args.requests * 2
    cpu_plain, commits_plain, events = await cpu_phase(a, False, count, dsn, db)
    cpu_bg, commits_bg, events_bg = await cpu_phase(a, True, count, dsn, db)
    print(f"\nLoom CPU per streamed response (replica A, c=8, {count} responses)")
    print(f"  no background : {cpu_plain:6.2f} ms  {commits_plain:5.2f} commits/response")
    print(f"  background    : {cpu_bg:6.2f} ms  {commits_bg:5.2f} commits/response")
    print(f"  events per background response: {events_bg:.0f} (no background: {events:.0f})")

    runs = 3 if args.quick else 10
    for label, follower in (("LISTEN/NOTIFY", b), ("polling 50 ms", services.get("C"))):
        if follower is None:
            continue
        delays = await cross_replica(a, follower, runs)
        print(
            f"\nLive event on A's stream -> on B's resumed stream ({label}, {len(delays)} events)"
        )
        print(
            f"  p50 {percentile(delays, 50):6.2f} ms  p99 {percentile(delays, 99):6.2f} ms"
            f"  max {max(delays):6.2f} ms (goal p99 <= 50 ms)"
        )


@contextlib.asynccontextmanager
async def database():
    name = f"loom_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def amain(args: argparse.Namespace) -> int:
    async with database() as db:
        base = PG_URL.rsplit("/", 1)[0]
        dsn = f"{base}/{db}"
        env = {"LOOM_DB_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1)}
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            started: list[Service] = []
            try:
                upstream = spawn_upstream(workdir)
                started.append(upstream)
                wait_ready(upstream)
                services = {
                    "A": spawn_loom(upstream, workdir, env, name="loom-a"),
                    "B": spawn_loom(upstream, workdir, env, name="loom-b"),
                }
                if args.poll:
                    poll = {"LOOM_PG_NOTIFY": "false", "LOOM_FOLLOW_POLL_INTERVAL": "0.05"}
                    services["C"] = spawn_loom(upstream, workdir, env | poll, name="loom-c")
                started += services.values()
                for service in services.values():
                    wait_ready(service, timeout=120)
                await run(args, services, db, dsn)
            finally:
                for service in started:
                    service.stop()
    print("\n(The machine is shared with other work: figures are approximate.)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=None, help="requests per TTFT series")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--poll", action="store_true", help="also measure polling followers")
    args = parser.parse_args(argv)
    args.requests = args.requests or (10 if args.quick else 60)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
