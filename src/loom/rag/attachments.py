"""Attaching files to a vector store: check the files, settle each one's chunking, queue it.

Shared by the vector store create call (`file_ids`), the single-file attach and file
batches, so the three validate and queue in the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from loom.errors import NotFoundError
from loom.rag import chunking
from loom.rag.service import RagServices


@dataclass
class FileSpec:
    file_id: str
    attributes: dict[str, Any] | None
    chunking_strategy: Any  # as the client sent it
    param: str  # where this file was named in the request, for errors


async def attach(
    rag: RagServices,
    owner: str,
    vector_store_id: str,
    specs: list[FileSpec],
    batch_id: str | None = None,
) -> list[dict[str, Any]]:
    """Validate every spec, then attach all as in_progress and wake the worker.

    Raises before writing anything if a file is unknown or a strategy is invalid.
    """
    now = int(time.time())
    strategies = [chunking.resolve_strategy(s.chunking_strategy, _strategy_param(s)) for s in specs]
    missing = await rag.files.missing(owner, [s.file_id for s in specs], now)
    if missing:
        spec = next(s for s in specs if s.file_id == missing[0])
        raise NotFoundError(f"No such File object: {missing[0]}", param=spec.param)
    attachments = [
        {
            "file_id": s.file_id,
            "attributes": s.attributes,
            "chunking_strategy": strategy,
            "created_at": now,
        }
        for s, strategy in zip(specs, strategies, strict=True)
    ]
    batch = (
        {"id": batch_id, "vector_store_id": vector_store_id, "created_at": now}
        if batch_id is not None
        else None
    )
    out = await rag.vector_stores.attach(owner, vector_store_id, attachments, batch)
    rag.ingestion.wake()
    return out


def _strategy_param(spec: FileSpec) -> str:
    prefix = spec.param.rsplit(".", 1)[0] if spec.param.endswith(".file_id") else ""
    return f"{prefix}.chunking_strategy" if prefix else "chunking_strategy"
