"""PostgreSQL's CPU per stored turn, counted on the server for this bench's database alone.

    .venv/bin/python -m bench.pg_store
    .venv/bin/python -m bench.pg_store --calls 1000 --pg-url postgresql://postgres@127.0.0.1:5432/postgres

`bench.scale` counts every `postgres` process on the machine, so on a shared machine other
users of the server blur its PostgreSQL share. This bench calls Loom's store directly (no
HTTP, no model) on a fresh database and reads the CPU of that database's own backends
(`/proc/<pid>/schedstat` of the postgres processes whose title names it) around each
kind of call: a plain turn's save, a conversation turn's save (two items), and the
history read of a cached conversation of 1,000 items with nothing new. The WAL writer's
and checkpointer's work is not in it. Loom's CPU for the same calls (this process) and
their wall time are printed beside it. Medians over rounds, per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.scale import load, pg_database
from loom.store import Database, Stores

ROUNDS = 5
HISTORY = 1000


def backend_cpu_ns(database: str) -> int:
    """CPU time, in ns, of the server processes connected to `database`."""
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if f" {database} " not in title:
                continue
            total += int((proc / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # it exited meanwhile
            continue
    return total


def item(text: str, role: str = "user") -> dict[str, Any]:
    kind = "input_text" if role == "user" else "output_text"
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": role,
        "content": [{"type": kind, "text": text}],
    }


def response() -> dict[str, Any]:
    """A finished response the size of the benches' 64-chunk answers."""
    answer = item(" ".join(f"w{i}" for i in range(64)), "assistant")
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": time.time(),
        "status": "completed",
        "model": "openai/bench-model",
        "output": [answer],
        "usage": {"input_tokens": 12, "output_tokens": 64, "total_tokens": 76},
    }


Call = Callable[[], Awaitable[Any]]


async def measure(database: str, call: Call, calls: int) -> tuple[float, float, float]:
    """Median per call over ROUNDS rounds: PostgreSQL CPU µs, Loom CPU µs, wall µs p50."""
    per_round = max(1, calls // ROUNDS)
    server, client, wall = [], [], []
    for _ in range(ROUNDS):
        took = []
        pg0, me0 = backend_cpu_ns(database), time.process_time()
        for _ in range(per_round):
            start = time.perf_counter()
            await call()
            took.append(time.perf_counter() - start)
        server.append((backend_cpu_ns(database) - pg0) / per_round / 1000)
        client.append((time.process_time() - me0) / per_round * 1e6)
        wall.append(statistics.median(took) * 1e6)
    return statistics.median(server), statistics.median(client), statistics.median(wall)


async def run(db_url: str, calls: int) -> None:
    database = db_url.rsplit("/", 1)[1]
    db = await Database.connect(db_url)
    try:
        await db.migrate()
        stores = Stores.on(db)
        owner = "bench"
        talk = {"id": f"conv_{uuid.uuid4().hex}", "object": "conversation", "created_at": 0}
        await stores.conversations.create(owner, talk, [])
        long = {"id": f"conv_{uuid.uuid4().hex}", "object": "conversation", "created_at": 0}
        await stores.conversations.create(owner, long, [item(f"m{i}") for i in range(HISTORY)])

        async def plain() -> None:
            await stores.responses.save_turn(owner, response(), [item("q")])

        async def conversation() -> None:
            made, question = response(), item("q")
            turn = [question, *made["output"]]
            await stores.responses.save_turn(owner, made, [question], talk["id"], turn)

        async def history() -> None:
            await stores.conversations.all_items(owner, long["id"])

        kinds = {
            "plain turn's save": plain,
            "conversation turn's save": conversation,
            f"history read, {HISTORY:,} items cached": history,
        }
        for call in kinds.values():  # warm up: connections, prepared statements, caches
            for _ in range(20):
                await call()
        print(f"\nPostgreSQL per call, this database's backends only ({load()})")
        for name, call in kinds.items():
            server, client, wall = await measure(database, call, calls)
            print(
                f"  {name:>32}: PostgreSQL {server:6.1f} us CPU, Loom {client:6.1f} us CPU,"
                f" wall p50 {wall:6.1f} us"
            )
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind")
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL maintenance database, to create and drop the bench's own",
    )
    args = parser.parse_args(argv)
    with pg_database(args.pg_url) as db_url:
        asyncio.run(run(db_url, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
