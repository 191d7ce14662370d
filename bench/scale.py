"""Loom past one core, and Loom when clients walk away: two phases of streaming load.

    .venv/bin/python -m bench.scale                   # both phases, about a minute
    .venv/bin/python -m bench.scale --phase workers   # needs PostgreSQL
    .venv/bin/python -m bench.scale --phase aborts --concurrency 128 --drop 0.3

Both run streaming `POST /v1/responses` (64-chunk answers from the fast fake upstream,
`bench.fake_upstream`), each simulated client on its own keep-alive connection.

- workers: the same load against `loom serve` (one process) and `loom serve --workers 2`,
  both on a fresh PostgreSQL database (`--pg-url` names the server's maintenance
  database; the bench creates its own database there and drops it afterwards). The
  clients run `--warmup` seconds, then a `--seconds` window is measured on the same
  connections (`bench.streams.run_window`). Prints the responses per second of each and
  their ratio (issue 16 asks for at least 1.6), the spread of the window's seconds, and
  with two workers how many of our connections each holds and its share of Loom's CPU. With
  `--rounds N` it measures both N times, every other round two workers first, and judges
  the median ratio (on a shared machine, one round says little).
- aborts: one Loom process (SQLite, or `--db-url`), each client on a conversation of its
  own; a share (`--drop`, default 30%) of the streams is dropped by the client right
  after the first text delta. Then every response is read back and every conversation
  listed, and the bench prints server errors (a 5xx, or a turn stored `failed`), lost
  turns (a response or conversation item missing), duplicated items, and turns still
  unfinished (`in_progress`) once Loom is idle. All must be 0.

Each simulated client is a `bench.client.Client` (uvloop, httptools), so the load
generator costs a fraction of what Loom does (httpx took ~1.7-2 ms of CPU per response;
this client about 0.12). The workers phase prints where the CPU went, in ms per response
(`bench.cpu_clocks`): Loom, PostgreSQL (its own processes, the backends of the bench's
database and exited backends; live backends of other databases are someone else's), the
fake upstream, the load generator and the rest of the machine (other processes, and the
kernel's interrupt work); and the bound those figures put on the ratio on this machine's
cores: cores x L / (L + o), L being Loom's CPU per response and o everything else's (once
counting this bench's processes only, once with the rest of the machine). This machine is
shared, so a ratio measured while other processes ran says less than one measured on a
quiet one. Last, `bench.cores` says what the machine itself gives two busy Python
processes against one, with no Loom involved: no `--workers 2` can scale past that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import cores
from bench.cpu_clocks import Clocks, connections_by_process, wait_idle
from bench.harness import (
    Service,
    StartupError,
    run_loop,
    spawn_loom,
    spawn_upstream,
    wait_ready,
)
from bench.streams import ClockReader, Reading, Run, run_load, run_window, stream_body

WORKERS_TARGET = 1.6


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


# -- CPU per part ----------------------------------------------------------------------


def cpu_shares(run: Run) -> dict[str, float]:
    """CPU ms per response of each part of the machine during `run`'s window: Loom,
    PostgreSQL, the fake upstream, this load generator, and the rest (other processes on
    the machine, and the kernel's interrupt work)."""
    n = max(1, run.responses)
    return {name: s / n * 1000 for name, s in run.cpu.items() if name != "machine"}


def cpu_split(run: Run) -> str:
    return ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_shares(run).items())


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
    run_loop(run_load(loom.base_url, bodies, 2 * args.concurrency, args.seconds / 2))


def clock_reader(loom: Service, upstream: Service, database: str) -> ClockReader:
    port = int(loom.base_url.rsplit(":", 1)[1])
    readings = 0

    def read() -> Reading:
        nonlocal readings
        readings += 1
        clocks = Clocks.read(loom.proc.pid, upstream.proc.pid, database)
        # Counted at the window's end only (the second reading), the clocks already read.
        connections = connections_by_process(port, list(clocks.loom)) if readings > 1 else {}
        return Reading(clocks, connections)

    return read


def measure_streams(
    loom: Service, upstream: Service, database: str, args: argparse.Namespace
) -> Run:
    """Wait for start-up's OpenAPI build in every worker, then run the window."""
    with httpx.Client(base_url=loom.base_url, timeout=60, trust_env=False) as http:
        http.get("/openapi.json").raise_for_status()
    wait_idle(loom.proc.pid)
    bodies = [stream_body()] * args.concurrency
    reader = clock_reader(loom, upstream, database)
    return run_loop(run_window(loom.base_url, bodies, args.warmup, args.seconds, reader))


def print_run(label: str, run: Run) -> None:
    bad = sum(o.bad for o in run.outcomes) + len(run.errors)
    p50 = statistics.median(run.took) * 1000 if run.took else float("nan")
    print(
        f"  {label:>10}: {run.rps:6.1f} responses/s, total p50 {p50:6.1f} ms, errors {bad},"
        f" machine {run.busy('machine'):.2f} of {os.cpu_count()} cores busy"
    )
    print("             CPU ms per response: " + cpu_split(run))
    seconds = sorted(run.per_second)
    print(
        f"             per second of the {run.wall:.0f} s window: {seconds[0]} to {seconds[-1]}"
        f" responses (median {statistics.median(seconds):.0f})"
    )
    workers = sorted((pid for pid, n in run.connections.items() if n), key=run.connections.get)
    if len(workers) > 1:
        loom = sum(run.loom_processes.values()) or 1.0
        print(
            "             per worker: "
            + ", ".join(
                f"{run.connections[pid]} connections, {run.loom_processes[pid] / loom:.0%}"
                for pid in workers
            )
            + " of Loom's CPU"
        )
    if run.errors:
        print(f"             transport errors e.g. {run.errors[0]}")
    if failed := next((o for o in run.outcomes if o.bad), None):
        print(f"             e.g. HTTP {failed.status}: {failed.detail.decode(errors='replace')}")


def print_bound(run: Run, which: str = "the 1-process run") -> None:
    """What a 1-process run's CPU figures allow `--workers 2` on this machine."""
    shares = cpu_shares(run)
    loom = shares.pop("Loom")
    if not loom:
        return
    # One process runs on one core at most; two share the machine's cores with the rest.
    cores = os.cpu_count() or 1
    print(
        f"  bound on the ratio from {which} ({cores} cores): {cores}L / (L + o),"
        " L = Loom's CPU per response, o = the rest's:"
    )
    rest = shares.pop("rest of the machine")
    for what, o in (
        ("this bench's processes", sum(shares.values())),
        ("with the rest of the machine", sum(shares.values()) + rest),
    ):
        bound = min(float(cores), cores * loom / (loom + o))
        print(f"    o = {what}: {cores} x {loom:.2f} / ({loom:.2f} + {o:.2f}) = {bound:.2f}x")


def measure_workers(
    upstream: Service, tmp: Path, db_url: str, workers: int, args: argparse.Namespace
) -> Run:
    loom = spawn_loom(
        upstream,
        tmp,
        {"LOOM_DB_URL": db_url},
        name=f"loom-workers-{workers}",
        serve_args=("--workers", str(workers)),
    )
    try:
        wait_ready(loom)
        run = measure_streams(loom, upstream, db_url.rsplit("/", 1)[1], args)
    finally:
        loom.stop()
    print_run("1 process" if workers == 1 else f"{workers} workers", run)
    return run


def print_accounting(one: Run, two: Run) -> None:
    """The ratio the CPU figures allow: one process keeps at most one core busy (1 / L1
    responses per second) and two workers share the cores with everything else (cores /
    total2), so ratio <= cores x L1 / total2. Costs per response grow with two workers,
    which a bound read from the 1-process run alone does not see."""
    cores = os.cpu_count() or 1
    first, second = cpu_shares(one), cpu_shares(two)
    loom1, loom2 = first["Loom"], second["Loom"]
    rest1, rest2 = first["rest of the machine"], second["rest of the machine"]
    bench1 = sum(first.values()) - loom1 - rest1
    bench2 = sum(second.values()) - loom2 - rest2
    if not loom2:
        return
    print(
        f"    CPU ms per response, 2 workers (1 process): Loom {loom2:.2f} ({loom1:.2f}),"
        f" rest of this bench {bench2:.2f} ({bench1:.2f}), other jobs {rest2:.2f} ({rest1:.2f})"
    )
    print(
        f"    what they allow: {cores} x {loom1:.2f} / ({loom2:.2f} + {bench2:.2f})"
        f" = {cores * loom1 / (loom2 + bench2):.2f}x; with the other jobs"
        f" {cores * loom1 / (loom2 + bench2 + rest2):.2f}x (one process kept"
        f" {one.busy('Loom'):.2f} of a core busy; under 1, the measured ratio flatters two)"
    )


def workers_phase(upstream: Service, tmp: Path, args: argparse.Namespace) -> bool:
    print(
        f"\n--workers 2 on PostgreSQL, streaming, {args.concurrency} clients, {args.warmup:g} s"
        f" warm-up then a {args.seconds:g} s window, {args.rounds} round(s) ({load()})"
    )
    ratios: list[float] = []
    singles: list[Run] = []
    with pg_database(args.pg_url) as db_url:
        for n in range(args.rounds):
            # Every other round starts with two workers, so that neither goes first always
            # (the database grows, PostgreSQL checkpoints, other jobs come and go).
            order = (1, 2) if n % 2 == 0 else (2, 1)
            results = {w: measure_workers(upstream, tmp, db_url, w, args) for w in order}
            singles.append(results[1])
            ratios.append(results[2].rps / results[1].rps if results[1].rps else 0.0)
            if any(run.busy("load generator") >= 0.85 for run in results.values()):
                print("  the load generator was >= 85% busy: the ratio is bounded by the client")
            if results[1].busy("machine") >= 0.9 * (os.cpu_count() or 1):
                print("  the cores were all busy with one process: a second has little to use")
            print(f"  round {n + 1}: ratio {ratios[-1]:.2f}x ({load()})")
            print_accounting(results[1], results[2])
    # The bound is read from the 1-process run that shared the machine the least.
    quietest = min(singles, key=lambda run: cpu_shares(run)["rest of the machine"])
    print_bound(quietest, "the quietest 1-process run" if len(singles) > 1 else "the 1-process run")
    print(
        f"  this machine, no Loom: two busy Python processes give {cores.scaling():.2f}x"
        " of one (bench.cores; 2.00x = two independent cores)"
    )
    ratio = statistics.median(ratios)
    verdict = "ok" if ratio >= WORKERS_TARGET else f"BELOW {WORKERS_TARGET}"
    rounds = f", median of {len(ratios)} rounds" if len(ratios) > 1 else ""
    print(f"  ratio 2 workers / 1 process: {ratio:.2f}x{rounds} ({verdict})")
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
        run = run_loop(run_load(loom.base_url, bodies, args.requests, args.seconds, drop=args.drop))
        loom_cpu = loom.cpu_seconds() - cpu
        counts = check_stored(loom, run, conversations)
    finally:
        loom.stop()
    dropped = sum(o.dropped for o in run.outcomes)
    cpu_ms = loom_cpu / max(1, len(run.outcomes)) * 1000
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
    parser.add_argument("--requests", type=int, default=2000, help="aborts: how many streams")
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="workers: each measured window; aborts: at most, per measurement",
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="workers: seconds of load before the window"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="workers: measure 1 process and 2 workers N times"
    )
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
