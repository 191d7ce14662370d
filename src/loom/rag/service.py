"""Build and hold the retrieval parts a running Loom needs, in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from threadpoolctl import threadpool_limits

from loom.config import Settings
from loom.inference.registry import ModelRegistry
from loom.rag.embeddings import Embeddings
from loom.rag.file_storage import FileStorage
from loom.rag.ingestion import IngestionWorker
from loom.rag.local_embedder import LocalEmbedder
from loom.rag.retrieval import Retrieval
from loom.rag.search import HybridSearch
from loom.store.db import Database
from loom.store.files import FileStore
from loom.store.vector_stores import VectorStoreStore


@dataclass
class RagServices:
    files: FileStore
    vector_stores: VectorStoreStore
    storage: FileStorage
    embeddings: Embeddings
    ingestion: IngestionWorker
    retrieval: Retrieval
    max_upload_bytes: int
    embedding_model: str  # for vector stores that name none

    async def aclose(self) -> None:
        await self.ingestion.aclose()
        self.embeddings.local.close()


async def start_rag(settings: Settings, db: Database, registry: ModelRegistry) -> RagServices:
    # One BLAS thread: a search's matrix-vector product is small, and on a busy machine
    # extra BLAS threads spin against the event loop and the other requests (measured: a
    # 2,000-row scan went from ~35 ms to ~3 ms under load).
    threadpool_limits(limits=1, user_api="blas")
    files, vector_stores = FileStore(db), VectorStoreStore(db)
    storage = FileStorage(settings.files_dir)
    embeddings = Embeddings(registry, LocalEmbedder())
    worker = IngestionWorker(vector_stores, files, storage, embeddings)
    await worker.start()
    return RagServices(
        files=files,
        vector_stores=vector_stores,
        storage=storage,
        embeddings=embeddings,
        ingestion=worker,
        retrieval=Retrieval(HybridSearch(db, vector_stores, embeddings)),
        max_upload_bytes=settings.max_upload_bytes,
        embedding_model=settings.embedding_model,
    )
