"""Loom past one core, and Loom when clients walk away: two phases of streaming load.

    .venv/bin/python -m bench.scale                   # both phases, about a minute
    .venv/bin/python -m bench.scale --phase workers   # needs PostgreSQL
    .venv/bin/python -m bench.scale --phase aborts --concurrency 128 --drop 0.3

Both run streaming `POST /v1/responses` (64-chunk answers from the fast fake upstream,
`bench.fake_upstream`), each simulated client on its own keep-alive connection.

- workers: the same load against `loom serve` (one process) and `loom serve --workers 2`,
  both on a fresh PostgreSQL database (`--pg-url` names the server's maintenance
  database; the bench creates its own database there and drops it afterwards). Prints the
  responses per second of each and their ratio (issue 16 asks for at least 1.6).
- aborts: one Loom process (SQLite, or `--db-url`), each client on a conversation of its
  own; a share (`--drop`, default 30%) of the streams is dropped by the client right
  after the first text delta. Then every response is read back and every conversation
  listed, and the bench prints server errors (a 5xx, or a turn stored `failed`), lost
  turns (a response or conversation item missing), duplicated items, and turns still
  unfinished (`in_progress`) once Loom is idle. All must be 0.

Each simulated client is a `bench.client.Client` (raw asyncio, httptools), so the load
generator costs a fraction of what Loom does (httpx took ~1.7-2 ms of CPU per response).
The workers phase prints where the CPU went, in ms per response: Loom, PostgreSQL (every
`postgres` process on the machine, so also other users of that server), the fake
upstream, the load generator and the rest of the machine; and the bound those figures put
on the ratio on this machine's cores: cores x L / (L + o), L being Loom's CPU per response
and o everything else's (once counting this bench's processes only, once with the rest of
the machine). This machine is shared, so a ratio measured while other processes ran says
less than one measured on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.client import Client, HttpError, encode_request
from bench.harness import (
    Service,
    StartupError,
    machine_busy_seconds,
    spawn_loom,
    spawn_upstream,
    wait_ready,
)

MODEL = "openai/bench-model"
PROMPT = "Say something."
DELTA = b"event: response.output_text.delta"
COMPLETED = b"event: response.completed"
FAILED = b"event: response.failed"
RESPONSE_ID = re.compile(rb'"id":"(resp_[0-9a-f]+)"')
WORKERS_TARGET = 1.6
_TICKS = os.sysconf("SC_CLK_TCK")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def _process_stats() -> Iterator[tuple[int, str, list[str]]]:
    """Each process on the machine: its pid, its name and the fields of /proc/<pid>/stat
    after the name (the list starts at field 3, state)."""
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:  # it exited meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        yield int(stat_path.parent.name), name, stat[stat.rindex(")") + 2 :].split()


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (uvicorn's workers), from /proc."""
    return sum(
        (int(fields[11]) + int(fields[12])) / _TICKS
        for proc_pid, _, fields in _process_stats()
        if proc_pid == pid or int(fields[1]) == pid
    )


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL server process on this machine (what the backends of
    exited connections used is in the postmaster's children's time), from /proc. It counts
    whatever else uses that server during the run too."""
    return sum(
        sum(int(f) for f in fields[11:15]) / _TICKS
        for _, name, fields in _process_stats()
        if name == "postgres"
    )


# -- the load ---------------------------------------------------------------------------


def cpu_shares(run: Run) -> dict[str, float]:
    """CPU ms per response of each part of the machine during `run`: Loom, PostgreSQL, the
    fake upstream, this load generator, and the rest (other processes on the machine)."""
    n = max(1, len(run.outcomes))
    parts = {
        "Loom": run.loom_cpu,
        "PostgreSQL": run.postgres_cpu,
        "upstream": run.upstream_busy * run.wall,
        "load generator": run.client_busy * run.wall,
    }
    parts["rest of the machine"] = max(0.0, run.machine_busy * run.wall - sum(parts.values()))
    return {name: seconds / n * 1000 for name, seconds in parts.items()}


def cpu_split(run: Run) -> str:
    return ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_shares(run).items())


@dataclass
class Outcome:
    """What one simulated client saw of one request."""

    status: int
    response_id: str | None = None
    dropped: bool = False
    completed: bool = False  # the stream ended with response.completed
    failed: bool = False  # the stream ended with response.failed
    took: float = 0.0


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # transport errors on our side
    wall: float = 0.0
    loom_cpu: float = 0.0
    postgres_cpu: float = 0.0  # seconds, every PostgreSQL process on the machine
    client_busy: float = 0.0  # this process's CPU over the run, as a share of one core
    upstream_busy: float = 0.0  # the fake upstream's, likewise
    machine_busy: float = 0.0  # every process on the machine, in cores

    @property
    def rps(self) -> float:
        done = sum(o.completed or o.dropped for o in self.outcomes)
        return done / self.wall if self.wall else 0.0


async def stream_once(client: Client, request: bytes, drop: bool) -> Outcome:
    start = time.perf_counter()
    async with asyncio.timeout(120):
        answer = await client.send(
            request, marker=DELTA, end_marker=COMPLETED, watch=(FAILED,), stop_at_marker=drop
        )
    outcome = Outcome(status=answer.status, dropped=drop)
    if answer.status != 200:
        return outcome
    if found := RESPONSE_ID.search(answer.head):
        outcome.response_id = found.group(1).decode()
    if drop and answer.first_at is None:
        outcome.dropped = False  # the stream ended before its first delta
    outcome.completed = answer.ended and not outcome.dropped
    outcome.failed = FAILED in answer.seen
    outcome.took = time.perf_counter() - start
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
        run.client_busy = (time.process_time() - cpu) / run.wall if run.wall else 0.0
        for http in clients:
            http.close()
    return run


def stream_body(conversation: str | None = None) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "input": PROMPT, "stream": True}
    if conversation is not None:
        body["conversation"] = conversation
    return orjson.dumps(body)


# -- phase: --workers 2 on PostgreSQL ---------------------------------------------------


@contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of `admin_url`, dropped afterwards."""
    name = f"loom_bench_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def warm_up(loom: Service, args: argparse.Namespace) -> None:
    """Wait for start-up's OpenAPI build, then open connections and fill caches with a
    round of streams at the phase's concurrency."""
    with httpx.Client(base_url=loom.base_url, timeout=60, trust_env=False) as http:
        http.get("/openapi.json").raise_for_status()
    bodies = [stream_body()] * args.concurrency
    asyncio.run(run_load(loom.base_url, bodies, 2 * args.concurrency, args.seconds / 2))


def measure_streams(loom: Service, upstream: Service, args: argparse.Namespace) -> Run:
    bodies = [stream_body()] * args.concurrency
    warm_up(loom, args)
    cpu, upstream_cpu = tree_cpu_seconds(loom.proc.pid), upstream.cpu_seconds()
    machine, postgres = machine_busy_seconds(), postgres_cpu_seconds()
    run = asyncio.run(run_load(loom.base_url, bodies, args.requests, args.seconds))
    run.loom_cpu = tree_cpu_seconds(loom.proc.pid) - cpu
    run.postgres_cpu = postgres_cpu_seconds() - postgres
    run.upstream_busy = (upstream.cpu_seconds() - upstream_cpu) / run.wall
    run.machine_busy = (machine_busy_seconds() - machine) / run.wall
    return run


def workers_phase(upstream: Service, tmp: Path, args: argparse.Namespace) -> bool:
    print(f"\n--workers 2 on PostgreSQL, streaming, {args.concurrency} clients ({load()})")
    results: dict[int, Run] = {}
    with pg_database(args.pg_url) as db_url:
        for workers in (1, 2):
            loom = spawn_loom(
                upstream,
                tmp,
                {"LOOM_DB_URL": db_url},
                name=f"loom-workers-{workers}",
                serve_args=("--workers", str(workers)),
            )
            try:
                wait_ready(loom)
                results[workers] = run = measure_streams(loom, upstream, args)
            finally:
                loom.stop()
            bad = sum(o.status >= 500 or o.failed for o in run.outcomes) + len(run.errors)
            completed = [o.took for o in run.outcomes if o.completed]
            p50 = statistics.median(completed) * 1000 if completed else float("nan")
            label = "1 process" if workers == 1 else f"{workers} workers"
            print(
                f"  {label:>10}: {run.rps:6.1f} responses/s, total p50 {p50:6.1f} ms,"
                f" errors {bad}, machine {run.machine_busy:.2f} of {os.cpu_count()} cores busy"
            )
            print("             CPU ms per response: " + cpu_split(run))
            if run.errors:
                print(f"             transport errors e.g. {run.errors[0]}")
    if any(run.client_busy >= 0.85 for run in results.values()):
        print("  the load generator was >= 85% busy: the ratio is bounded by the client")
    if results[1].machine_busy >= 0.9 * (os.cpu_count() or 1):
        print("  the machine's cores were all busy with one process: a second has little to use")
    shares = cpu_shares(results[1])
    loom = shares.pop("Loom")
    if loom:
        # One process runs on one core at most; two share the machine's cores with the rest.
        cores = os.cpu_count() or 1
        print(
            f"  bound on the ratio from the 1-process run ({cores} cores): {cores}L / (L + o),"
            " L = Loom's CPU per response, o = the rest's:"
        )
        rest = shares.pop("rest of the machine")
        for what, o in (
            ("this bench's processes", sum(shares.values())),
            ("with the rest of the machine", sum(shares.values()) + rest),
        ):
            bound = min(float(cores), cores * loom / (loom + o))
            print(f"    o = {what}: {cores} x {loom:.2f} / ({loom:.2f} + {o:.2f}) = {bound:.2f}x")
    ratio = results[2].rps / results[1].rps if results[1].rps else 0.0
    verdict = "ok" if ratio >= WORKERS_TARGET else f"BELOW {WORKERS_TARGET}"
    print(f"  ratio 2 workers / 1 process: {ratio:.2f}x ({verdict})")
    return ratio >= WORKERS_TARGET


# -- phase: client aborts ---------------------------------------------------------------


def check_stored(loom: Service, run: Run, conversations: list[str]) -> dict[str, int]:
    """Read every response and conversation back: what was lost, doubled or left open."""
    counts = dict.fromkeys(("server errors", "lost turns", "duplicated items", "unfinished"), 0)
    counts["server errors"] = sum(o.status >= 500 or o.failed for o in run.outcomes)
    counts["lost turns"] = sum(o.status == 200 and o.response_id is None for o in run.outcomes)
    ids = [o.response_id for o in run.outcomes if o.status == 200 and o.response_id]
    outputs: set[str] = set()
    deadline = time.monotonic() + 60  # turns the server still runs get this long to end
    with httpx.Client(base_url=loom.base_url, timeout=30, trust_env=False) as http:
        for response_id in ids:
            while True:
                got = http.get(f"/v1/responses/{response_id}")
                if got.status_code == 404:
                    counts["lost turns"] += 1
                    break
                if got.status_code >= 500:
                    counts["server errors"] += 1
                    break
                stored = got.json()
                if stored["status"] not in ("in_progress", "queued"):
                    if stored["status"] == "failed":
                        counts["server errors"] += 1
                    outputs.update(item["id"] for item in stored["output"])
                    break
                if time.monotonic() > deadline:
                    counts["unfinished"] += 1
                    break
                time.sleep(0.05)
        seen: dict[str, int] = {}
        for conv_id in conversations:
            after = None
            while True:
                params: dict[str, Any] = {"limit": 100, "order": "asc"}
                if after:
                    params["after"] = after
                page = http.get(f"/v1/conversations/{conv_id}/items", params=params).json()
                for item in page["data"]:
                    seen[item["id"]] = seen.get(item["id"], 0) + 1
                if not page["has_more"]:
                    break
                after = page["data"][-1]["id"]
    counts["duplicated items"] = sum(n - 1 for n in seen.values() if n > 1)
    counts["lost turns"] += len(outputs - seen.keys())
    return counts


def aborts_phase(upstream: Service, tmp: Path, args: argparse.Namespace) -> bool:
    db_url = args.db_url or f"sqlite+aiosqlite:///{tmp / 'aborts.db'}"
    print(
        f"\nclient aborts: streaming, {args.concurrency} clients, {args.drop:.0%} dropped"
        f" after the first delta, database {db_url.split(':', 1)[0]} ({load()})"
    )
    loom = spawn_loom(upstream, tmp, {"LOOM_DB_URL": db_url}, name="loom-aborts")
    try:
        wait_ready(loom)
        warm_up(loom, args)
        with httpx.Client(base_url=loom.base_url, timeout=30, trust_env=False) as http:
            conversations = [
                http.post("/v1/conversations", json={}).raise_for_status().json()["id"]
                for _ in range(args.concurrency)
            ]
        bodies = [stream_body(conv) for conv in conversations]
        cpu = loom.cpu_seconds()
        run = asyncio.run(
            run_load(loom.base_url, bodies, args.requests, args.seconds, drop=args.drop)
        )
        run.loom_cpu = loom.cpu_seconds() - cpu
        counts = check_stored(loom, run, conversations)
    finally:
        loom.stop()
    dropped = sum(o.dropped for o in run.outcomes)
    cpu_ms = run.loom_cpu / max(1, len(run.outcomes)) * 1000
    print(
        f"  {len(run.outcomes)} turns ({dropped} dropped) in {run.wall:.1f}s:"
        f" {run.rps:.1f} responses/s, Loom CPU {cpu_ms:.2f} ms/response"
    )
    print("  " + ", ".join(f"{name}: {n}" for name, n in counts.items()))
    if run.errors:
        print(f"  load generator transport errors: {len(run.errors)}, e.g. {run.errors[0]}")
    ok = not any(counts.values()) and not run.errors
    print(f"  {'ok' if ok else 'FAILED'}: all must be 0")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=("all", "workers", "aborts"), default="all")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2000, help="at most, per measurement")
    parser.add_argument("--seconds", type=float, default=15.0, help="at most, per measurement")
    parser.add_argument("--drop", type=float, default=0.3, help="share of streams dropped")
    parser.add_argument("--db-url", help="the aborts phase's database (default: SQLite)")
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL maintenance database, for the workers phase",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ok = True
    with tempfile.TemporaryDirectory(prefix="loom-scale-") as tmp:
        upstream = spawn_upstream(Path(tmp))
        try:
            wait_ready(upstream)
            if args.phase in ("all", "workers"):
                ok = workers_phase(upstream, Path(tmp), args) and ok
            if args.phase in ("all", "aborts"):
                ok = aborts_phase(upstream, Path(tmp), args) and ok
        except StartupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            upstream.stop()
    print(f"\n(run took {time.perf_counter() - started:.0f}s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
