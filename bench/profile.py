"""Where Loom's CPU goes on the streaming hot path: py-spy on `loom serve` under load.

    .venv/bin/python -m bench.profile                    # c=128 streaming, 15 s sample
    .venv/bin/python -m bench.profile --concurrency 32 --seconds 10 --plain
    .venv/bin/python -m bench.profile --keep /tmp/loom.raw   # keep py-spy's raw stacks

It starts the fake upstream and Loom as `bench.responses` does, puts N clients of the
same load generator on `POST /v1/responses`, and meanwhile samples Loom with
`py-spy record --format raw` (install py-spy first: `.venv/bin/pip install py-spy`).
Each sample is charged to one layer by its innermost frame that belongs to a known
layer (`LAYERS`, first match wins), so a frame of h11 called by httpx counts as the
upstream client, and the table says what share of Loom's samples each layer took.
Only the thread holding the GIL is sampled (`py-spy --gil`): sampling every thread
charges a thread's wait for the GIL to whatever line it waits on, which made single lines
look like a fifth of the CPU. C code that releases the GIL (SQLite executing a statement,
socket calls) is then not seen; the "ms/response" column spreads Loom's measured CPU over
the sampled layers. Idle samples (the loop waiting in `epoll`) are left out, or kept with
`--idle`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import spawn_loom, spawn_upstream, wait_ready, wait_settled
from bench.responses import Bench, Settings, loom_target, plain_request, run_phase, stream_request

# (layer, markers in a frame's file path or function name); the innermost frame that
# matches any marker decides the sample's layer, checked in this order per frame.
LAYERS = [
    (
        "store (SQLAlchemy, aiosqlite, sqlite3, asyncpg)",
        ("sqlalchemy", "aiosqlite", "sqlite", "asyncpg", "loom/store/"),
    ),
    (
        "upstream client (httpx, httpcore, h11, aiohttp)",
        ("httpx", "httpcore", "/h11/", "aiohttp", "loom/inference/"),
    ),
    ("HTTP server (uvicorn, httptools)", ("uvicorn", "httptools")),
    ("ASGI framework (FastAPI, Starlette, pydantic)", ("fastapi", "starlette", "pydantic")),
    (
        "Loom middleware (security, observability)",
        (
            "loom/security/",
            "loom/observability/",
            "loom/api/client_test_id",
            "prometheus_client",
            "opentelemetry",
        ),
    ),
    ("Loom API layer (routes, SSE framing)", ("loom/api/",)),
    ("engine: events, turn runner, agent loop", ("loom/engine/", "loom/tools/")),
    ("asyncio / event loop", ("asyncio", "uvloop", "contextvars")),
    ("logging", ("logging/",)),
]
OTHER = "other Python"
UNSEEN = "C code under the event loop (uvloop, sockets)"


def _layer(stack: str) -> str:
    frames = stack.split(";")
    if "(<string>:" in frames[-1]:
        # Code made at run time (dataclass __init__...): under uvloop, py-spy reports such a
        # frame, stale, while C code runs; it is not where the time goes.
        return UNSEEN
    for frame in reversed(frames):
        for layer, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return layer
    return OTHER


def _is_idle(stack: str) -> bool:
    leaf = stack.rsplit(";", 1)[-1]
    return any(word in leaf for word in ("select (selectors", "_run_once", "run_forever", "(idle)"))


def summarize(raw: str, include_idle: bool) -> list[tuple[str, int]]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if not include_idle and _is_idle(stack):
            continue
        counts[_layer(stack)] += int(count)
    return counts.most_common()


def top_functions(raw: str, limit: int) -> list[tuple[str, int]]:
    """The innermost frames with the most samples (self time)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit() and not _is_idle(stack):
            counts[stack.rsplit(";", 1)[-1]] += int(count)
    return counts.most_common(limit)


async def _load(
    bench: Bench, stream: bool, concurrency: int, seconds: float, store: bool = True
) -> int:
    target = loom_target(bench.loom, store=store)
    request = stream_request if stream else plain_request
    clients = bench.clients(target, concurrency)
    await run_phase(clients, target, request, concurrency * 2, 5.0)  # warm up
    phase = await run_phase(clients, target, request, 10**9, seconds)
    await bench.aclose()
    return phase.count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--plain", action="store_true", help="non-streaming requests")
    parser.add_argument("--no-store", action="store_true", help='requests with "store": false')
    parser.add_argument("--idle", action="store_true", help="count idle event-loop samples")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="write py-spy's raw stacks here")
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread, not only the one holding the GIL (counts GIL waits)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loom-profile-") as tmp:
        upstream = spawn_upstream(Path(tmp))
        loom = None
        try:
            wait_ready(upstream)
            loom = spawn_loom(upstream, Path(tmp))
            wait_ready(loom)
            wait_settled(loom)
            raw_path = args.keep or Path(tmp) / "loom.raw"
            bench = Bench(
                loom, upstream, Settings(levels=[args.concurrency], requests=0, max_seconds=0)
            )
            # Loom warms up first (its first requests, lazy imports), then py-spy samples.
            asyncio.run(_load(bench, not args.plain, args.concurrency, 2.0, not args.no_store))
            bench = Bench(
                loom, upstream, Settings(levels=[args.concurrency], requests=0, max_seconds=0)
            )
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(loom.proc.pid),
                    "--format",
                    "raw",
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(int(args.seconds)),
                    "--output",
                    str(raw_path),
                    "--nonblocking",
                    *([] if args.all_threads else ["--gil"]),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            cpu_before = loom.cpu_seconds()
            started = time.perf_counter()
            count = asyncio.run(
                _load(bench, not args.plain, args.concurrency, args.seconds, not args.no_store)
            )
            wall = time.perf_counter() - started
            cpu = loom.cpu_seconds() - cpu_before
            _, err = spy.communicate(timeout=args.seconds + 60)
            if spy.returncode != 0 or not raw_path.exists():
                print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)
                return 1
            raw = raw_path.read_text()
        finally:
            if loom is not None:
                loom.stop()
            upstream.stop()
    kind = "non-streaming" if args.plain else "streaming"
    print(
        f"Loom, {kind} POST /v1/responses, {args.concurrency} clients: {count} responses in "
        f"{wall:.1f}s, {cpu / max(count, 1) * 1000:.2f} ms CPU per response"
    )
    layers = summarize(raw, args.idle)
    total = sum(n for _, n in layers) or 1
    print(f"\n{'layer':<52}{'share':>8}{'ms/response':>14}")
    for layer, n in layers:
        share = n / total
        print(f"{layer:<52}{share:>8.1%}{share * cpu / max(count, 1) * 1000:>14.2f}")
    print("\nbusiest functions (self time):")
    for frame, n in top_functions(raw, 25):
        print(f"  {n / total:6.1%}  {frame[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
