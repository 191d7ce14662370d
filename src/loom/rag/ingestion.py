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

LEASE_SECONDS = 1800.0
_READ_AT_ONCE = 4
_CLAIM = 32  # attachments per round; their chunks are embedded together


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
            if claimed:
                await self._ingest(claimed)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def _ingest(self, rows: list[Any]) -> None:
        """Read and chunk each claimed file, then embed the chunks of all files sharing a
        model in one call (the model is far faster on batches), then store them together."""
        by_model: dict[str, list[tuple[Any, list[str]]]] = {}
        reading = asyncio.Semaphore(_READ_AT_ONCE)  # files are read whole: bound the memory

        async def read_one(row: Any) -> tuple[str, list[str]]:
            async with reading:
                return await self._read_and_split(row)

        read = await asyncio.gather(*(read_one(row) for row in rows), return_exceptions=True)
        for row, outcome in zip(rows, read, strict=True):
            if isinstance(outcome, ParseError):
                await self._fail(row, "invalid_file", str(outcome))
            elif isinstance(outcome, BaseException):
                log.error("ingestion of %s failed: %r", row.file_id, outcome)
                name = type(outcome).__name__
                await self._fail(row, "server_error", f"Ingestion failed: {name}")
            else:
                model, texts = outcome
                by_model.setdefault(model, []).append((row, texts))
        for model, files in by_model.items():
            await self._embed_and_store(model, files)

    async def _embed_and_store(self, model: str, files: list[tuple[Any, list[str]]]) -> None:
        everything = [t for _, texts in files for t in texts]
        try:
            vectors = await self._embeddings.embed(model, everything)
        except Exception as exc:
            if len(files) > 1:  # find the file that fails; the others go on
                for one in files:
                    await self._embed_and_store(model, [one])
                return
            if not isinstance(exc, LoomError):
                log.exception("embedding with %s failed", model)
            message = exc.message if isinstance(exc, LoomError) else type(exc).__name__
            await self._fail(files[0][0], "server_error", f"Embedding failed: {message}")
            return
        done, start = [], 0
        for row, texts in files:
            mine = vectors[start : start + len(texts)]
            start += len(texts)
            done.append((row, texts, mine, sum(len(t.encode()) for t in texts) + mine.size * 4))
        try:
            await self._stores.finish_many(done)
        except Exception:  # store them one by one, so only the one that fails fails
            log.exception("ingestion: storing %d files together failed", len(done))
            for row, texts, mine, usage in done:
                try:
                    await self._stores.finish(row, texts=texts, vectors=mine, usage_bytes=usage)
                except Exception:
                    log.exception("ingestion: cannot store the chunks of %s", row.file_id)
                    await self._fail(row, "server_error", "Ingestion failed: storage error")

    async def _read_and_split(self, row: Any) -> tuple[str, list[str]]:
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
        return store.embedding_model, texts

    async def _fail(self, row: Any, code: str, message: str) -> None:
        try:
            await self._stores.finish(row, error={"code": code, "message": message})
        except Exception:
            log.exception("ingestion: cannot record the failure of %s", row.file_id)
