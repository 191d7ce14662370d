"""A restart in the middle of ingestion leaves no file stuck `in_progress`.

The test builds the state a crashed Loom leaves behind, through the real stores: a file
attached to a vector store and claimed by a worker (its lease still running), never
finished. A new Loom on the same database must ingest it to `completed`.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import openai
import pytest

from loom.rag.file_storage import FileStorage
from loom.store import Database
from loom.store.files import FileStore
from loom.store.vector_stores import VectorStoreStore
from tests.conftest import run_loom
from tests.support.pg import in_thread, pg_database

TEXT = b"Lighthouses guide ships past dangerous rocks at night."


async def leave_a_claimed_file(db_url: str, files_dir: Path) -> tuple[str, str]:
    db = await Database.connect(db_url)
    try:
        await db.migrate()
        storage = FileStorage(files_dir)
        partial = storage.partial_path("file-restart")
        partial.write_bytes(TEXT)
        now = int(time.time())
        await FileStore(db).create(
            "anonymous",
            {
                "id": "file-restart",
                "created_at": now,
                "expires_at": None,
                "bytes": len(TEXT),
                "filename": "lighthouse.txt",
                "purpose": "assistants",
                "path": storage.commit(partial, "file-restart"),
            },
        )
        stores = VectorStoreStore(db)
        await stores.create(
            "anonymous",
            {
                "id": "vs_restart",
                "created_at": now,
                "last_active_at": now,
                "name": "restart",
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
            "anonymous",
            "vs_restart",
            [
                {
                    "file_id": "file-restart",
                    "attributes": None,
                    "chunking_strategy": strategy,
                    "created_at": now,
                }
            ],
        )
        claimed = await stores.claim(time.time(), 3600, 10)  # the crashed worker's lease
        assert [c.file_id for c in claimed] == ["file-restart"]
    finally:
        await db.close()
    return "vs_restart", "file-restart"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def test_restart_finishes_a_file_left_in_progress(backend, loom_env, tmp_path):
    files_dir = tmp_path / "files"
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
        else:
            url = stack.enter_context(pg_database())
        store_id, file_id = in_thread(leave_a_claimed_file(url, files_dir))
        env = {**loom_env, "LOOM_DB_URL": url, "LOOM_FILES_DIR": str(files_dir)}
        server = stack.enter_context(run_loom(env))
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        deadline = time.monotonic() + 60
        while True:
            attached = client.vector_stores.files.retrieve(
                vector_store_id=store_id, file_id=file_id
            )
            if attached.status != "in_progress" or time.monotonic() > deadline:
                break
        assert attached.status == "completed"
        hits = client.vector_stores.search(vector_store_id=store_id, query="lighthouse rocks")
        assert [h.file_id for h in hits.data] == [file_id]
