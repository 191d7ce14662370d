"""`/v1/vector_stores`: stores, their files, file batches and search. Thin: the work is in
`loom.rag` (attachments, ingestion, search) and `loom.store.vector_stores`."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from loom.api.body import openapi_body, parse_body
from loom.api.deps import owner, services
from loom.api.files import rag_of
from loom.api.pages import page_of
from loom.api.vector_store_bodies import (
    AttachFile,
    CreateFileBatch,
    CreateVectorStore,
    SearchVectorStore,
    UpdateFileAttributes,
    UpdateVectorStore,
)
from loom.engine.ids import new_id
from loom.errors import InvalidRequestError, NotFoundError
from loom.rag import chunking
from loom.rag.attachments import FileSpec, attach
from loom.rag.query_rewrite import rewrite
from loom.services import Services

router = APIRouter()
Status = Literal["in_progress", "completed", "failed", "cancelled"]


def _store_not_found(store_id: str) -> NotFoundError:
    return NotFoundError(f"No vector store found with id '{store_id}'.", param="vector_store_id")


def _file_not_found(file_id: str, store_id: str) -> NotFoundError:
    return NotFoundError(
        f"No file with id '{file_id}' in vector store '{store_id}'.", param="file_id"
    )


async def _require_store(svc: Services, who: str, store_id: str) -> None:
    if await rag_of(svc).vector_stores.get_row(who, store_id) is None:
        raise _store_not_found(store_id)


@router.post("/vector_stores", openapi_extra=openapi_body(CreateVectorStore))
async def create_vector_store(
    request: Request, svc: Services = Depends(services), who: str = Depends(owner)
):
    rag = rag_of(svc)
    body, _ = await parse_body(request, CreateVectorStore)
    model = body.embedding_model or rag.embedding_model
    await rag.embeddings.check_model(model)
    chunking.resolve_strategy(body.chunking_strategy)
    file_ids = body.file_ids or []
    now = int(time.time())
    missing = await rag.files.missing(who, file_ids, now)
    if missing:
        index = file_ids.index(missing[0])
        raise NotFoundError(f"No such File object: {missing[0]}", param=f"file_ids[{index}]")
    expiry = body.expires_after.model_dump() if body.expires_after else None
    store_id = new_id("vs")
    await rag.vector_stores.create(
        who,
        {
            "id": store_id,
            "created_at": now,
            "last_active_at": now,
            "name": body.name,
            "metadata": body.metadata or {},
            "expires_after": expiry,
            "expires_at": now + expiry["days"] * 86400 if expiry else None,
            "embedding_model": model,
        },
    )
    specs = [
        FileSpec(f, None, body.chunking_strategy, f"file_ids[{i}]") for i, f in enumerate(file_ids)
    ]
    if specs:
        await attach(rag, who, store_id, specs)
    return await rag.vector_stores.get(who, store_id, now)


@router.get("/vector_stores")
async def list_vector_stores(
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    rows, more = await rag_of(svc).vector_stores.list(
        who, int(time.time()), after=after, limit=limit, order=order
    )
    return page_of(rows, more)


@router.get("/vector_stores/{vector_store_id}")
async def get_vector_store(
    vector_store_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    store = await rag_of(svc).vector_stores.get(who, vector_store_id, int(time.time()))
    if store is None:
        raise _store_not_found(vector_store_id)
    return store


@router.post("/vector_stores/{vector_store_id}", openapi_extra=openapi_body(UpdateVectorStore))
async def update_vector_store(
    vector_store_id: str,
    request: Request,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    body, raw = await parse_body(request, UpdateVectorStore)
    now = int(time.time())
    values: dict = {"last_active_at": now}
    if "name" in raw:
        values["name"] = body.name
    if "metadata" in raw:
        values["metadata"] = body.metadata or {}
    if "expires_after" in raw:
        expiry = body.expires_after.model_dump() if body.expires_after else None
        values["expires_after"] = expiry
        values["expires_at"] = now + expiry["days"] * 86400 if expiry else None
    store = await rag_of(svc).vector_stores.update(who, vector_store_id, values, now)
    if store is None:
        raise _store_not_found(vector_store_id)
    return store


@router.delete("/vector_stores/{vector_store_id}")
async def delete_vector_store(
    vector_store_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    if not await rag_of(svc).vector_stores.delete(who, vector_store_id):
        raise _store_not_found(vector_store_id)
    return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}


@router.post(
    "/vector_stores/{vector_store_id}/search", openapi_extra=openapi_body(SearchVectorStore)
)
async def search_vector_store(
    vector_store_id: str,
    request: Request,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    body, _ = await parse_body(request, SearchVectorStore)
    rag = rag_of(svc)
    await _require_store(svc, who, vector_store_id)
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    if body.rewrite_query:
        queries = [rewrite(q) for q in queries]
    threshold = body.ranking_options.score_threshold if body.ranking_options else None
    hits = await rag.retrieval.search(
        who,
        [vector_store_id],
        queries,
        max_num_results=body.max_num_results,
        filters=body.filters,
        score_threshold=threshold,
    )
    await rag.vector_stores.touch([vector_store_id], int(time.time()))
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": hits,
        "has_more": False,
        "next_page": None,
    }


# -- files of a vector store -------------------------------------------------------------


@router.post("/vector_stores/{vector_store_id}/files", openapi_extra=openapi_body(AttachFile))
async def attach_file(
    vector_store_id: str,
    request: Request,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    body, _ = await parse_body(request, AttachFile)
    await _require_store(svc, who, vector_store_id)
    spec = FileSpec(body.file_id, body.attributes, body.chunking_strategy, "file_id")
    (attached,) = await attach(rag_of(svc), who, vector_store_id, [spec])
    return attached


@router.get("/vector_stores/{vector_store_id}/files")
async def list_store_files(
    vector_store_id: str,
    filter: Status | None = None,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    await _require_store(svc, who, vector_store_id)
    rows, more = await rag_of(svc).vector_stores.list_files(
        who, vector_store_id, status=filter, after=after, limit=limit, order=order
    )
    return page_of(rows, more)


@router.get("/vector_stores/{vector_store_id}/files/{file_id}")
async def get_store_file(
    vector_store_id: str,
    file_id: str,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    found = await rag_of(svc).vector_stores.get_file(who, vector_store_id, file_id)
    if found is None:
        await _require_store(svc, who, vector_store_id)
        raise _file_not_found(file_id, vector_store_id)
    return found


@router.post(
    "/vector_stores/{vector_store_id}/files/{file_id}",
    openapi_extra=openapi_body(UpdateFileAttributes),
)
async def update_store_file(
    vector_store_id: str,
    file_id: str,
    request: Request,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    body, _ = await parse_body(request, UpdateFileAttributes)
    updated = await rag_of(svc).vector_stores.update_attributes(
        who, vector_store_id, file_id, body.attributes
    )
    if updated is None:
        await _require_store(svc, who, vector_store_id)
        raise _file_not_found(file_id, vector_store_id)
    return updated


@router.delete("/vector_stores/{vector_store_id}/files/{file_id}")
async def detach_store_file(
    vector_store_id: str,
    file_id: str,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    if not await rag_of(svc).vector_stores.detach(who, vector_store_id, file_id):
        await _require_store(svc, who, vector_store_id)
        raise _file_not_found(file_id, vector_store_id)
    return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}


@router.get("/vector_stores/{vector_store_id}/files/{file_id}/content")
async def store_file_content(
    vector_store_id: str,
    file_id: str,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    rag = rag_of(svc)
    found = await rag.vector_stores.get_file(who, vector_store_id, file_id)
    if found is None:
        await _require_store(svc, who, vector_store_id)
        raise _file_not_found(file_id, vector_store_id)
    texts = await rag.vector_stores.chunk_texts(vector_store_id, file_id)
    return {
        "object": "vector_store.file_content.page",
        "data": [{"type": "text", "text": t} for t in texts],
        "has_more": False,
        "next_page": None,
    }


# -- file batches ------------------------------------------------------------------------


@router.post(
    "/vector_stores/{vector_store_id}/file_batches", openapi_extra=openapi_body(CreateFileBatch)
)
async def create_file_batch(
    vector_store_id: str,
    request: Request,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    body, _ = await parse_body(request, CreateFileBatch)
    if bool(body.file_ids) == bool(body.files):
        raise InvalidRequestError(
            "Give exactly one of 'file_ids' and 'files', not empty.", param="file_ids"
        )
    await _require_store(svc, who, vector_store_id)
    if body.file_ids:
        specs = [
            FileSpec(f, body.attributes, body.chunking_strategy, f"file_ids[{i}]")
            for i, f in enumerate(body.file_ids)
        ]
    else:
        specs = [
            FileSpec(
                f.file_id,
                f.attributes if f.attributes is not None else body.attributes,
                f.chunking_strategy or body.chunking_strategy,
                f"files[{i}].file_id",
            )
            for i, f in enumerate(body.files or [])
        ]
    batch_id = new_id("vsfb")
    rag = rag_of(svc)
    await attach(rag, who, vector_store_id, specs, batch_id=batch_id)
    return await rag.vector_stores.get_batch(who, vector_store_id, batch_id)


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}")
async def get_file_batch(
    vector_store_id: str,
    batch_id: str,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    batch = await rag_of(svc).vector_stores.get_batch(who, vector_store_id, batch_id)
    if batch is None:
        await _require_store(svc, who, vector_store_id)
        raise NotFoundError(f"No file batch found with id '{batch_id}'.", param="batch_id")
    return batch


@router.post("/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(
    vector_store_id: str,
    batch_id: str,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    batch = await rag_of(svc).vector_stores.cancel_batch(who, vector_store_id, batch_id)
    if batch is None:
        await _require_store(svc, who, vector_store_id)
        raise NotFoundError(f"No file batch found with id '{batch_id}'.", param="batch_id")
    return batch


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}/files")
async def list_batch_files(
    vector_store_id: str,
    batch_id: str,
    filter: Status | None = None,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    await get_file_batch(vector_store_id, batch_id, svc, who)
    rows, more = await rag_of(svc).vector_stores.list_files(
        who,
        vector_store_id,
        status=filter,
        batch_id=batch_id,
        after=after,
        limit=limit,
        order=order,
    )
    return page_of(rows, more)
