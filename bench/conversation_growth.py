"""Cost per turn as a conversation grows: 10, 100 and 1,000 items.

    .venv/bin/python -m bench.conversation_growth
    .venv/bin/python -m bench.conversation_growth --samples 40 --db-url postgresql+asyncpg://...

Starts the benchmark's fake upstream (`bench.fake_upstream`) and `loom serve`, each in its
own process (`bench.harness`), with a fresh SQLite database unless `--db-url` says
otherwise. For each size it grows conversations to that many items (batches of 20 through
`POST /v1/conversations/{id}/items`), then measures on each:
- `POST /v1/responses` with `conversation`: Loom reads the whole history, calls the model
  with it, and appends the turn;
- the same chat request sent straight to the upstream (the history as chat messages, as
  Loom sends it), which is what the ratio is taken against;
- a plain turn: the same question as `POST /v1/responses` without a conversation, and its
  own chat request sent straight to the upstream;
- `GET /v1/conversations/{id}/items`: the newest page of 20, and a page of 100 starting
  in the middle of the history.
Medians (and p90) over the samples, in milliseconds of wall time per request.

The headline is "added ms over a plain turn": what Loom adds to a conversation turn
(Loom's time minus the direct upstream call with the same history) less what it adds to
a plain turn (likewise), median over the samples. It is what having a conversation costs
in Loom itself: reading the history, turning it into messages, appending the turn. Loom's
CPU per turn (from /proc/<pid>/task/*/schedstat, in ns, averaged over the samples) is
printed beside it, as it is far less
noisy than wall time on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.fake_upstream import MODEL as UPSTREAM_MODEL
from bench.harness import Service, StartupError, spawn_loom, spawn_upstream, wait_ready

# A turn on a conversation may add at most this much over a plain turn (issue 16).
ADDED_BUDGET_MS = 3.0

SIZES = (10, 100, 1000)
BATCH = 20  # the most items one request may add
MODEL = f"openai/{UPSTREAM_MODEL}"
QUESTION = "And what comes next?"


def filler(start: int, count: int) -> list[dict[str, Any]]:
    """Alternating user and assistant messages of a dozen words."""
    items = []
    for n in range(start, start + count):
        role = "user" if n % 2 == 0 else "assistant"
        text = f"Message {n}: a few ordinary words to give this turn a realistic size."
        items.append({"type": "message", "role": role, "content": text})
    return items


def grow(http: httpx.Client, size: int) -> tuple[str, list[str]]:
    """A new conversation with exactly `size` items; its id and its item ids, oldest first."""
    conv = http.post("/v1/conversations", json={}).raise_for_status().json()
    ids: list[str] = []
    while len(ids) < size:
        count = min(BATCH, size - len(ids))
        added = http.post(
            f"/v1/conversations/{conv['id']}/items", json={"items": filler(len(ids), count)}
        )
        ids.extend(item["id"] for item in added.raise_for_status().json()["data"])
    return conv["id"], ids


def chat_body(size: int) -> dict[str, Any]:
    """The chat request Loom makes for a turn on a conversation of `size` filler items
    (a plain turn's with `size` 0)."""
    history = [{"role": m["role"], "content": m["content"]} for m in filler(0, size)]
    return {
        "model": UPSTREAM_MODEL,
        "messages": [*history, {"role": "user", "content": QUESTION}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def cpu_seconds(service: Service) -> float:
    """CPU time of the service's threads, to the nanosecond (/proc/<pid>/task/*/schedstat),
    where /proc/<pid>/stat counts 10 ms ticks: too coarse for one turn."""
    total = 0
    for stat in Path(f"/proc/{service.proc.pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that just ended
            continue
    return total / 1e9


def timed_ms(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Bench:
    def __init__(self, loom: httpx.Client, upstream: httpx.Client, service: Service):
        self.loom = loom
        self.upstream = upstream
        self.service = service
        self.cpu = {"conversation": 0.0, "plain": 0.0}  # Loom's CPU seconds, summed

    def respond(self, conv_id: str | None) -> dict[str, Any]:
        body = {"model": MODEL, "input": QUESTION}
        if conv_id is not None:
            body["conversation"] = conv_id
        response = self.loom.post("/v1/responses", json=body).raise_for_status().json()
        if response["status"] != "completed":
            raise RuntimeError(f"response ended {response['status']}: {response.get('error')}")
        return response

    def direct(self, chat_body: dict[str, Any]) -> None:
        with self.upstream.stream("POST", "/v1/chat/completions", json=chat_body) as answer:
            answer.raise_for_status()
            for _ in answer.iter_raw():
                pass

    def list_page(self, conv_id: str, **params: Any) -> None:
        page = self.loom.get(f"/v1/conversations/{conv_id}/items", params=params)
        if not page.raise_for_status().json()["data"]:
            raise RuntimeError("an empty page")

    def turn_ms(self, conv_id: str | None) -> float:
        """Wall time of one turn; Loom's CPU for it goes into `self.cpu`."""
        cpu = cpu_seconds(self.service)
        took = timed_ms(lambda: self.respond(conv_id))
        self.cpu["plain" if conv_id is None else "conversation"] += cpu_seconds(self.service) - cpu
        return took

    def sample(self, size: int) -> dict[str, float]:
        conv_id, ids = grow(self.loom, size)
        loom_ms = self.turn_ms(conv_id)
        body = chat_body(size)
        direct_ms = timed_ms(lambda: self.direct(body))
        plain_ms = self.turn_ms(None)
        plain_body = chat_body(0)
        plain_direct_ms = timed_ms(lambda: self.direct(plain_body))
        middle = ids[len(ids) // 2]
        return {
            "loom": loom_ms,
            "direct": direct_ms,
            "plain": plain_ms,
            "plain_direct": plain_direct_ms,
            "newest": timed_ms(lambda: self.list_page(conv_id, limit=20)),
            "middle": timed_ms(
                lambda: self.list_page(conv_id, limit=100, order="asc", after=middle)
            ),
        }


def report(
    results: dict[int, list[dict[str, float]]], cpu: dict[int, dict[str, float]], db: str
) -> None:
    print(f"\nConversation growth: ms per request, median (p90), database: {db}")
    header = (
        f"{'items':>6} | {'create via Loom':>16} | {'upstream direct':>16} | {'ratio':>6} |"
        f" {'list 20 newest':>15} | {'ratio':>6} | {'list 100 middle':>15} | {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for size, samples in results.items():
        cols = {k: [s[k] for s in samples] for k in samples[0]}
        med = {k: statistics.median(v) for k, v in cols.items()}
        p90 = {k: percentile(v, 0.9) for k, v in cols.items()}

        def cell(key: str, width: int, med=med, p90=p90) -> str:
            return f"{med[key]:7.2f} ({p90[key]:6.2f})".rjust(width)

        print(
            f"{size:>6} | {cell('loom', 16)} | {cell('direct', 16)} |"
            f" {med['loom'] / med['direct']:5.2f}x | {cell('newest', 15)} |"
            f" {med['newest'] / med['direct']:5.2f}x | {cell('middle', 15)} |"
            f" {med['middle'] / med['direct']:5.2f}x"
        )
    print(
        "\nratio: Loom's time for that request / a direct upstream call with the same chat"
        " body.\nLoom's added cost per turn = create - direct."
    )
    for size, samples in results.items():
        added = statistics.median(s["loom"] - s["direct"] for s in samples)
        plain = statistics.median(s["plain"] - s["plain_direct"] for s in samples)
        print(
            f"  {size:>5} items: Loom adds {added:6.2f} ms per conversation turn,"
            f" {plain:6.2f} ms per plain turn"
        )
    print(
        "\nadded ms over a plain turn (conversation turn's added cost - plain turn's,"
        f" median; budget {ADDED_BUDGET_MS:g} ms):"
    )
    for size, samples in results.items():
        over = statistics.median(
            (s["loom"] - s["direct"]) - (s["plain"] - s["plain_direct"]) for s in samples
        )
        conv_cpu, plain_cpu = (
            cpu[size][k] * 1000 / len(samples) for k in ("conversation", "plain")
        )
        verdict = "ok" if over <= ADDED_BUDGET_MS else "OVER BUDGET"
        print(
            f"  {size:>5} items: {over:6.2f} ms added over a plain turn ({verdict});"
            f" Loom CPU per turn {conv_cpu:5.2f} ms vs {plain_cpu:5.2f} ms plain"
            f" (+{conv_cpu - plain_cpu:.2f} ms)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20, help="conversations per size")
    parser.add_argument("--db-url", help="Loom's database (default: a fresh SQLite file)")
    args = parser.parse_args(argv)

    services: list[Service] = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
        db_url = args.db_url or f"sqlite+aiosqlite:///{Path(tmp) / 'loom.db'}"
        try:
            upstream_service = spawn_upstream(Path(tmp))
            services.append(upstream_service)
            wait_ready(upstream_service)
            loom_service = spawn_loom(upstream_service, Path(tmp), {"LOOM_DB_URL": db_url})
            services.append(loom_service)
            wait_ready(loom_service)
            with (
                httpx.Client(base_url=loom_service.base_url, timeout=120) as loom,
                httpx.Client(base_url=upstream_service.base_url, timeout=120) as upstream,
            ):
                bench = Bench(loom, upstream, loom_service)
                loom.get("/openapi.json").raise_for_status()  # its start-up build is done
                for _ in range(3):  # warm up: connections, schemas, caches
                    bench.sample(SIZES[0])
                results: dict[int, list[dict[str, float]]] = {}
                cpu: dict[int, dict[str, float]] = {}
                for size in SIZES:
                    started = time.perf_counter()
                    bench.cpu = dict.fromkeys(bench.cpu, 0.0)
                    results[size] = [bench.sample(size) for _ in range(args.samples)]
                    cpu[size] = bench.cpu
                    took = time.perf_counter() - started
                    print(f"{size} items: {args.samples} samples in {took:.1f}s", file=sys.stderr)
        except StartupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            for service in reversed(services):
                service.stop()
        report(results, cpu, db_url.split(":", 1)[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
