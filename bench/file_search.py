"""Retrieval speed: ingestion with the bundled embedding model, and search at 10k/100k chunks.

    .venv/bin/python -m bench.file_search              # everything (PostgreSQL if reachable)
    .venv/bin/python -m bench.file_search --files 200 --sizes 10000

Ingestion: a real `loom serve` process; `--files` small files are uploaded, attached in one
file batch, and the batch is polled until done. Reported: chunks/s end to end, failures,
and the model alone embedding the same texts in this process (the ceiling).

Search: the index alone, in this process, on SQLite (sqlite-vec + FTS5) and PostgreSQL
(numpy over cached float32 vectors + full text). Chunks are synthetic: random unit
384-dim vectors and 40-word texts from a Zipf-distributed vocabulary, in one store of 100
files; queries are a random vector plus four words, two common (among the 500 most
frequent) and two rarer. `HybridSearch.search_embedded` runs
the whole hybrid ranking and hit assembly, without embedding the query (that cost is
printed apart). Each figure is compared with a brute-force numpy scan (`M @ q` and
argpartition) over the same vectors in memory, in the same run. The process's CPU time
per search (all its threads; the database's own work too on SQLite, not PostgreSQL's
server) is printed beside the wall times, with the load average: on a busy machine the
wall times stretch, the CPU times much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from threadpoolctl import threadpool_limits

from bench.harness import spawn_loom, spawn_upstream, wait_ready
from loom.rag.embeddings import Embeddings
from loom.rag.local_embedder import LocalEmbedder
from loom.rag.search import HybridSearch
from loom.store import Database
from loom.store.chunk_index import insert_chunks
from loom.store.vector_stores import VectorStoreStore, bump_version

DIMS = 384
FILES_PER_STORE = 100
TOPICS = ["rivers", "markets", "engines", "forests", "violins", "glaciers", "satellites"]


def small_text(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return f"Note {i}: a short report about {topic}, number {i * 7 % 101}, filed in week {i % 52}."


# -- ingestion ---------------------------------------------------------------------------


def bench_ingestion(files: int, workdir: Path) -> None:
    upstream = spawn_upstream(workdir)
    loom = spawn_loom(upstream, workdir, {"LOOM_FILES_DIR": str(workdir / "files")})
    try:
        wait_ready(upstream)
        wait_ready(loom, timeout=120)
        with httpx.Client(base_url=f"{loom.base_url}/v1", timeout=60, trust_env=False) as http:
            started = time.perf_counter()
            ids = []
            for i in range(files):
                answer = http.post(
                    "/files",
                    files={"file": (f"note{i}.txt", small_text(i).encode())},
                    data={"purpose": "assistants"},
                )
                answer.raise_for_status()
                ids.append(answer.json()["id"])
            uploaded = time.perf_counter() - started
            store = http.post("/vector_stores", json={"name": "bench"}).json()["id"]
            started = time.perf_counter()
            batch = http.post(f"/vector_stores/{store}/file_batches", json={"file_ids": ids})
            batch_id = batch.json()["id"]
            deadline = time.monotonic() + 1800
            while True:
                state = http.get(f"/vector_stores/{store}/file_batches/{batch_id}").json()
                if state["status"] != "in_progress" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)  # polling a server's state, not waiting on an event we own
            took = time.perf_counter() - started
            counts = state["file_counts"]
    finally:
        loom.stop()
        upstream.stop()
    embedder = LocalEmbedder()
    texts = [small_text(i) for i in range(min(files, 500))]
    embedder.embed_sync(texts[:8])
    t0 = time.perf_counter()
    embedder.embed_sync(texts)
    model_rate = len(texts) / (time.perf_counter() - t0)
    rate = counts["completed"] / took
    print(f"ingestion: {files} small files uploaded in {uploaded:.1f}s")
    print(
        f"  batch {state['status']}: completed {counts['completed']}, failed "
        f"{counts['failed']}, in {took:.1f}s = {rate:.1f} chunks/s end to end"
    )
    print(
        f"  the model alone on the same texts: {model_rate:.1f} chunks/s "
        f"(pipeline at {rate / model_rate:.2f}x of it)"
    )


# -- search ------------------------------------------------------------------------------


def synthetic(n: int, start: int, rng: np.random.Generator, vocab: list[str]):
    vectors = rng.standard_normal((n, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ranks = np.minimum(rng.zipf(1.2, size=(n, 40)), len(vocab)) - 1
    texts = [" ".join(vocab[r] for r in row) for row in ranks]
    return vectors, texts


async def fill(db: Database, store_id: str, vectors: np.ndarray, texts: list[str], start: int):
    """Append chunks to the store's files round-robin, 2,000 per transaction, each moving
    the store's version as ingestion does (so the next search reloads its vectors)."""
    for offset in range(0, len(texts), 2000):
        part = slice(offset, offset + 2000)
        async with db.write() as conn:
            by_file: dict[int, list[int]] = {}
            for i in range(offset, min(offset + 2000, len(texts))):
                by_file.setdefault((start + i) % FILES_PER_STORE, []).append(i)
            for f, rows in by_file.items():
                await insert_chunks(
                    conn,
                    "bench",
                    store_id,
                    f"file-{f}",
                    [texts[i] for i in rows],
                    vectors[rows],
                )
            await bump_version(conn, store_id)
        del part


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def bench_search_backend(url: str, label: str, sizes: list[int], queries: int) -> None:
    db = await Database.connect(url)
    await db.migrate()
    stores = VectorStoreStore(db)
    search = HybridSearch(db, stores, Embeddings(None, LocalEmbedder()))  # type: ignore[arg-type]
    store_id = f"vs_bench_{label}"
    now = int(time.time())
    await stores.create(
        "bench",
        {
            "id": store_id,
            "created_at": now,
            "last_active_at": now,
            "name": "bench",
            "metadata": {},
            "expires_after": None,
            "expires_at": None,
            "embedding_model": "local/all-minilm-l6-v2",
        },
    )
    strategy = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
    }
    await stores.attach(
        "bench",
        store_id,
        [
            {
                "file_id": f"file-{f}",
                "attributes": {"shard": f % 10},
                "chunking_strategy": strategy,
                "created_at": now,
            }
            for f in range(FILES_PER_STORE)
        ],
    )
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(5000)]
    all_vectors = np.zeros((0, DIMS), dtype=np.float32)
    have = 0
    for size in sizes:
        t0 = time.perf_counter()
        vectors, texts = synthetic(size - have, have, rng, vocab)
        await fill(db, store_id, vectors, texts, have)
        all_vectors = np.vstack([all_vectors, vectors])
        have = size
        if db.dialect_name == "postgresql":
            async with db.write() as conn:  # fresh planner statistics, as autovacuum would
                await conn.exec_driver_sql("ANALYZE chunks")
                await conn.exec_driver_sql("ANALYZE vector_store_files")
        filled = time.perf_counter() - t0
        qvecs = rng.standard_normal((queries + 3, DIMS)).astype(np.float32)
        qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
        words = [
            " ".join([*rng.choice(vocab[:500], 2), *rng.choice(vocab[500:], 2)])
            for _ in range(queries + 3)
        ]
        cold = time.perf_counter()
        await search.search_embedded([store_id], [words[0]], qvecs[:1], max_num_results=10)
        cold = time.perf_counter() - cold
        for flt_label, flt in (
            ("", None),
            (" filtered 1/10", {"type": "eq", "key": "shard", "value": 3}),
        ):
            samples, cpu = [], []
            for q in range(1, queries + 3):
                t, c = time.perf_counter(), time.process_time()
                hits = await search.search_embedded(
                    [store_id], [words[q]], qvecs[q : q + 1], max_num_results=10, filters=flt
                )
                if q >= 3:
                    samples.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                assert hits, "a search found nothing"
            numpy_samples = []
            for q in range(queries):
                t = time.perf_counter()
                sims = all_vectors @ qvecs[q]
                np.argpartition(-sims, 10)[:10]
                numpy_samples.append(time.perf_counter() - t)
            p50, p99 = percentiles(samples)
            n50, n99 = percentiles(numpy_samples)
            print(
                f"search {label:<10} {size:>7,} chunks{flt_label:<15}: p50 {p50 * 1e3:7.2f} ms, "
                f"p99 {p99 * 1e3:7.2f} ms | numpy scan p50 {n50 * 1e3:6.2f} ms, p99 "
                f"{n99 * 1e3:6.2f} ms | ratio p50 {p50 / n50:6.1f}x, p99 {p99 / n99:6.1f}x | "
                f"CPU p50 {statistics.median(cpu) * 1e3:6.2f} ms (load {os.getloadavg()[0]:.1f})"
            )
        print(f"  ({label}: filled to {size:,} in {filled:.1f}s; first search {cold * 1e3:.0f} ms)")
    await db.close()


def query_embedding_ms() -> float:
    embedder = LocalEmbedder()
    embedder.embed_sync(["warm up"])
    samples = []
    for i in range(20):
        t = time.perf_counter()
        embedder.embed_sync([f"what did the report {i} say about glaciers"])
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


async def pg_url() -> str | None:
    try:
        from sqlalchemy.engine import make_url

        from tests.support.pg import PG_URL, PgDatabases

        databases = PgDatabases(make_url(PG_URL))
        return await databases.create(), databases
    except Exception as exc:  # no server: say so and go on
        print(f"PostgreSQL not reachable ({type(exc).__name__}: {exc}); skipping it")
        return None


def main() -> None:
    threadpool_limits(limits=1, user_api="blas")  # as Loom runs (rag/service.py)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000]
    )
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--skip-ingestion", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
        workdir = Path(tmp)
        if not args.skip_ingestion:
            bench_ingestion(args.files, workdir)
        if args.skip_search:
            return
        print(f"query embedding (bundled model, one short query): {query_embedding_ms():.1f} ms")
        asyncio.run(
            bench_search_backend(
                f"sqlite+aiosqlite:///{workdir / 'search.db'}", "sqlite", args.sizes, args.queries
            )
        )
        if not args.skip_postgres:
            found = asyncio.run(pg_url())
            if found:
                url, databases = found
                try:
                    asyncio.run(bench_search_backend(url, "postgresql", args.sizes, args.queries))
                finally:
                    asyncio.run(databases.drop_all())


if __name__ == "__main__":
    main()
