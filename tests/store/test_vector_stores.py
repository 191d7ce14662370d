"""Vector stores and files belong to their owner: another owner gets nothing, and search
refuses another owner's store with the not-found error naming `vector_store_ids`."""

from __future__ import annotations

import time

import pytest

from loom.errors import NotFoundError
from loom.rag.retrieval import Retrieval
from loom.rag.search import HybridSearch
from loom.store.files import FileStore
from loom.store.vector_stores import VectorStoreStore
from tests.store.test_chunk_index import make_store


async def test_another_owner_sees_nothing(db, owner, stranger):
    store_id, *_ = await make_store(db, owner)
    stores = VectorStoreStore(db)
    now = int(time.time())
    assert (await stores.get(owner, store_id, now))["file_counts"]["total"] == 6
    assert await stores.get(stranger, store_id, now) is None
    assert await stores.get_file(stranger, store_id, "file-0") is None
    assert await stores.missing(stranger, [store_id]) == [store_id]
    assert await stores.list(stranger, now, after=None, limit=10, order="desc") == ([], False)
    assert not await stores.detach(stranger, store_id, "file-0")
    assert not await stores.delete(stranger, store_id)
    assert await stores.get_file(owner, store_id, "file-0") is not None

    files = FileStore(db)
    record = {
        "id": f"file-{store_id}",
        "created_at": now,
        "expires_at": None,
        "bytes": 1,
        "filename": "a.txt",
        "purpose": "assistants",
        "path": "x/y",
    }
    await files.create(owner, record)
    assert await files.get_row(stranger, record["id"]) is None
    assert await files.delete(stranger, record["id"]) is None
    assert (await files.get_row(owner, record["id"])).filename == "a.txt"

    retrieval = Retrieval(HybridSearch(db, stores, embeddings=None))  # type: ignore[arg-type]
    with pytest.raises(NotFoundError) as caught:
        await retrieval.search(stranger, [store_id], "anything")
    assert caught.value.param == "vector_store_ids"
    assert store_id in caught.value.message
