"""The chunk index: the cached-matrix path and the in-SQL path agree, filters included.

Vectors are random unit vectors, so the expected nearest chunks are computed here with
numpy over the same vectors and compared exactly (ids) and closely (similarities).
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from loom.store import Database, attribute_filters
from loom.store.chunk_index import (
    insert_chunks,
    keyword_candidates,
    start_vector_scan,
    vector_candidates,
)
from loom.store.retrieval_schema import vector_store_files as vsf_t
from loom.store.vector_cache import VectorCache
from loom.store.vector_stores import VectorStoreStore

DIMS = 16
FILES = 6
PER_FILE = 20


async def make_store(db: Database, owner: str) -> tuple[str, np.ndarray, list[int], list[str]]:
    stores = VectorStoreStore(db)
    store_id = f"vs_{uuid.uuid4().hex}"
    now = int(time.time())
    await stores.create(
        owner,
        {
            "id": store_id,
            "created_at": now,
            "last_active_at": now,
            "name": None,
            "metadata": {},
            "expires_after": None,
            "expires_at": None,
            "embedding_model": "test/model",
        },
    )
    await stores.attach(
        owner,
        store_id,
        [
            {
                "file_id": f"file-{f}",
                "attributes": {"shard": f % 3},
                "chunking_strategy": {},
                "created_at": now,
            }
            for f in range(FILES)
        ],
    )
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((FILES * PER_FILE, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    files = [f"file-{i // PER_FILE}" for i in range(FILES * PER_FILE)]
    async with db.write() as conn:
        for f in range(FILES):
            rows = slice(f * PER_FILE, (f + 1) * PER_FILE)
            texts = [f"chunk {i} of file {f} about topic{i % 7}" for i in range(PER_FILE)]
            await insert_chunks(conn, owner, store_id, f"file-{f}", texts, vectors[rows])
    async with db.read() as conn:
        ids = [
            r[0]
            for r in await conn.exec_driver_sql(
                "SELECT id FROM chunks WHERE vector_store_id = ? ORDER BY id"
                if db.dialect_name == "sqlite"
                else "SELECT id FROM chunks WHERE vector_store_id = $1 ORDER BY id",
                (store_id,),
            )
        ]
    return store_id, vectors, ids, files


@pytest.mark.parametrize("filtered", [False, True])
async def test_cached_and_sql_paths_find_the_same_nearest_chunks(db, owner, filtered):
    store_id, vectors, ids, files = await make_store(db, owner)
    query = vectors[7] * 0.6 + vectors[45] * 0.4
    query /= np.linalg.norm(query)
    filters = {"type": "eq", "key": "shard", "value": 1}
    condition = (
        attribute_filters.clause(filters, vsf_t.c.attributes, db.dialect_name) if filtered else None
    )
    allowed = [i for i, f in enumerate(files) if not filtered or int(f.split("-")[1]) % 3 == 1]
    sims = vectors[allowed] @ query
    best = [ids[allowed[i]] for i in np.argsort(-sims)[:10]]

    results = []
    for cache in (VectorCache(), VectorCache(max_bytes=0)):  # the second caches nothing
        async with db.read() as conn:
            found = await vector_candidates(conn, [store_id], query, condition, 10, [], cache)
        top = sorted(found, key=lambda i: -found[i])[:10]
        assert top == best
        results.append(found)
    cached, in_sql = results
    for chunk_id in best:
        assert cached[chunk_id] == pytest.approx(in_sql[chunk_id], abs=1e-4)


async def test_cache_reloads_after_the_store_changes(db, owner):
    store_id, vectors, ids, _ = await make_store(db, owner)
    cache = VectorCache()
    async with db.read() as conn:
        before = await vector_candidates(conn, [store_id], vectors[0], None, 5, [], cache)
    assert ids[0] in before
    await VectorStoreStore(db).detach(owner, store_id, "file-0")
    async with db.read() as conn:
        after = await vector_candidates(conn, [store_id], vectors[0], None, 5, [], cache)
    assert not set(after) & set(ids[:PER_FILE])


async def test_keyword_candidates_respect_the_filter(db, owner):
    store_id, _, ids, files = await make_store(db, owner)
    filters = {"type": "in", "key": "shard", "value": [0]}
    condition = attribute_filters.clause(filters, vsf_t.c.attributes, db.dialect_name)
    async with db.read() as conn:
        everything = await keyword_candidates(conn, [store_id], "topic3", None, 500)
        only_shard_0 = await keyword_candidates(conn, [store_id], "topic3", condition, 500)
    by_id = dict(zip(ids, files, strict=True))
    assert {by_id[i] for i in only_shard_0} == {"file-0", "file-3"}
    assert set(only_shard_0) < set(everything)
    assert len(everything) == FILES * len([i for i in range(PER_FILE) if i % 7 == 3])


@pytest.mark.parametrize("filtered", [False, True])
async def test_extra_ids_get_their_own_similarity(db, owner, filtered):
    """Keyword candidates (which have passed the filter already) each get a similarity,
    also when they are far from the query; an id that is no chunk of the store gets none."""
    store_id, vectors, ids, files = await make_store(db, owner)
    query = vectors[3]
    filters = {"type": "eq", "key": "shard", "value": 0}
    condition = (
        attribute_filters.clause(filters, vsf_t.c.attributes, db.dialect_name) if filtered else None
    )
    passing = [i for i, f in enumerate(files) if not filtered or int(f.split("-")[1]) % 3 == 0]
    nearest = [passing[k] for k in np.argsort(-(vectors[passing] @ query))[:2]]
    far = [i for i in passing if i not in nearest][::7]
    extra = [ids[i] for i in far] + [10**9]  # the last is no chunk at all
    expected = {ids[i] for i in nearest} | {ids[i] for i in far}

    for cache in (VectorCache(), VectorCache(max_bytes=0)):
        async with db.read() as conn:
            found = await vector_candidates(conn, [store_id], query, condition, 2, extra, cache)
        assert set(found) == expected
        by_id = dict(zip(ids, vectors @ query, strict=True))
        for chunk_id, similarity in found.items():
            assert similarity == pytest.approx(float(by_id[chunk_id]), abs=1e-4)


@pytest.mark.parametrize("filtered", [False, True])
async def test_keyword_membership_from_the_scan_matches_the_sql_path(db, owner, filtered):
    """With a vector scan of the stores, SQLite checks keyword matches against the cached
    rows instead of in SQL: same chunks, same relevance, same order. Another store's
    chunks (lower ids, same texts, so they would win every tie) must stay out."""
    _, _, other_ids, _ = await make_store(db, owner)
    store_id, vectors, ids, files = await make_store(db, owner)
    filters = {"type": "eq", "key": "shard", "value": 2}
    condition = (
        attribute_filters.clause(filters, vsf_t.c.attributes, db.dialect_name) if filtered else None
    )
    query = "topic3 topic5 file"
    for cache in (VectorCache(), VectorCache(max_bytes=0)):  # the second falls back to SQL
        async with db.read() as conn:
            in_sql = await keyword_candidates(conn, [store_id], query, condition, 7)
            scan = await start_vector_scan(conn, [store_id], vectors[0], condition, 7, cache)
            with_scan = await keyword_candidates(conn, [store_id], query, condition, 7, scan)
            await scan.finish(conn, [])
        assert list(with_scan) == list(in_sql)
        assert with_scan == pytest.approx(in_sql)
    by_id = dict(zip(ids, files, strict=True))
    assert len(in_sql) == 7
    assert not set(in_sql) & set(other_ids)
    if filtered:
        assert {by_id[i] for i in in_sql} <= {"file-2", "file-5"}
