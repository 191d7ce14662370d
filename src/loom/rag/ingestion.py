"""Background ingestion: parse, chunk and embed attached files, with state in the database.

Attaching a file writes an `in_progress` row and wakes this worker; the worker claims rows
with a lease, reads the file, splits it, embeds the chunks with the store's model and, in
one transaction, writes the chunks and marks the row `completed` (or `failed` with
`last_error`). A file that cannot be parsed fails alone. Because the state is only in the
database, a restart loses nothing: at start-up the leases a previous process held are
released and those files are ingested again (ingestion replaces a file's chunks, so
redoing it is safe). Other Loom processes on the same PostgreSQL are found by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from loom.errors import LoomError
from loom.rag import chunking
from loom.rag.embeddings import Embeddings
from loom.rag.file_storage import FileStorage
from loom.rag.parsing import ParseError, extract_text
from loom.store.files import FileStore
from loom.store.vector_stores import VectorStoreStore

log = logging.getLogger("loom.rag")

LEASE_SECONDS = 600.0
_CLAIM = 4


class IngestionWorker:
    def __init__(
        self,
        stores: VectorStoreStore,
        files: FileStore,
        storage: FileStorage,
        embeddings: Embeddings,
        poll_seconds: float = 2.0,
    ) -> None:
        self._stores = stores
        self._files = files
        self._storage = storage
        self._embeddings = embeddings
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        released = await self._stores.release_all_leases()
        if released:
            log.info("re-ingesting %d file(s) left in progress by a previous run", released)
        self._task = asyncio.create_task(self._run(), name="loom-ingestion")

    def wake(self) -> None:
        self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                claimed = await self._stores.claim(time.time(), LEASE_SECONDS, _CLAIM)
            except Exception:
                log.exception("ingestion: cannot claim work")
                claimed = []
            for row in claimed:
                await self._ingest(row)
            if claimed:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def _ingest(self, row: Any) -> None:
        try:
            texts, vectors, usage = await self._prepare(row)
        except ParseError as exc:
            await self._fail(row, "invalid_file", str(exc))
        except LoomError as exc:
            await self._fail(row, "server_error", f"Embedding failed: {exc.message}")
        except Exception as exc:
            log.exception("ingestion of %s failed", row.file_id)
            await self._fail(row, "server_error", f"Ingestion failed: {type(exc).__name__}")
        else:
            await self._stores.finish(row, texts=texts, vectors=vectors, usage_bytes=usage)

    async def _prepare(self, row: Any) -> tuple[list[str], Any, int]:
        record = await self._files.get_row(row.owner, row.file_id)
        if record is None:
            raise ParseError("the file no longer exists")
        try:
            data = await self._storage.read(record.path)
        except OSError as exc:
            raise ParseError(f"the file's content cannot be read: {exc}") from None
        text = await asyncio.to_thread(extract_text, record.filename, data)
        tokenizer = self._embeddings.local.tokenizer
        texts = await asyncio.to_thread(chunking.split, text, tokenizer, row.chunking_strategy)
        store = await self._stores.get_row(row.owner, row.vector_store_id)
        if store is None:
            raise ParseError("the vector store no longer exists")
        vectors = await self._embeddings.embed(store.embedding_model, texts)
        usage = sum(len(t.encode()) for t in texts) + vectors.size * 4
        return texts, vectors, usage

    async def _fail(self, row: Any, code: str, message: str) -> None:
        try:
            await self._stores.finish(row, error={"code": code, "message": message})
        except Exception:
            log.exception("ingestion: cannot record the failure of %s", row.file_id)
