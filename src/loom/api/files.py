"""`/v1/files`: upload (streamed to disk, size-limited), list, retrieve, content and delete.

Deleting a file also removes it from every vector store of its owner.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from loom.api.deps import owner, services
from loom.api.multipart_upload import receive_upload
from loom.api.pages import page_of
from loom.engine.ids import new_id
from loom.errors import InvalidRequestError, NotFoundError
from loom.rag.service import RagServices
from loom.services import Services
from loom.store.files import file_object

router = APIRouter()

PURPOSES = ("assistants", "user_data", "batch", "fine-tune", "vision", "evals")
_MIN_EXPIRY, _MAX_EXPIRY = 3600, 2592000


def rag_of(svc: Services) -> RagServices:
    assert svc.rag is not None, "retrieval services are built in the app's lifespan"
    return svc.rag


def _not_found(file_id: str) -> NotFoundError:
    return NotFoundError(f"No such File object: {file_id}", param="file_id")


def _expires_at(fields: dict[str, str], created_at: int) -> int | None:
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError(
            "'expires_after.anchor' must be 'created_at'.", param="expires_after.anchor"
        )
    if seconds is None or not seconds.isdigit() or not _MIN_EXPIRY <= int(seconds) <= _MAX_EXPIRY:
        raise InvalidRequestError(
            f"'expires_after.seconds' must be an integer from {_MIN_EXPIRY} to {_MAX_EXPIRY}.",
            param="expires_after.seconds",
        )
    return created_at + int(seconds)


@router.post("/files")
async def upload_file(
    request: Request, svc: Services = Depends(services), who: str = Depends(owner)
):
    rag = rag_of(svc)
    file_id = new_id("file").replace("_", "-", 1)
    partial = rag.storage.partial_path(file_id)
    upload = await receive_upload(request, partial, rag.max_upload_bytes)
    try:
        purpose = upload.fields.get("purpose")
        if purpose not in PURPOSES:
            raise InvalidRequestError(
                f"'purpose' must be one of {', '.join(PURPOSES)}; got {purpose!r}.",
                param="purpose",
            )
        created_at = int(time.time())
        record = {
            "id": file_id,
            "created_at": created_at,
            "expires_at": _expires_at(upload.fields, created_at),
            "bytes": upload.size,
            "filename": upload.filename or "upload",
            "purpose": purpose,
        }
        record["path"] = rag.storage.commit(partial, file_id)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        await rag.files.create(who, record)
    except BaseException:
        rag.storage.remove(record["path"])
        raise
    return await get_file(file_id, svc, who)


@router.get("/files")
async def list_files(
    purpose: str | None = None,
    after: str | None = None,
    limit: int = Query(10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    rows, more = await rag_of(svc).files.list(
        who, now=int(time.time()), purpose=purpose, after=after, limit=limit, order=order
    )
    return page_of(rows, more)


@router.get("/files/{file_id}")
async def get_file(file_id: str, svc: Services = Depends(services), who: str = Depends(owner)):
    row = await rag_of(svc).files.get_row(who, file_id, now=int(time.time()))
    if row is None:
        raise _not_found(file_id)
    return file_object(row)


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, svc: Services = Depends(services), who: str = Depends(owner)):
    rag = rag_of(svc)
    row = await rag.files.get_row(who, file_id, now=int(time.time()))
    if row is None or not rag.storage.path(row.path).exists():
        raise _not_found(file_id)
    return FileResponse(rag.storage.path(row.path), media_type="application/octet-stream")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, svc: Services = Depends(services), who: str = Depends(owner)):
    rag = rag_of(svc)
    await rag.vector_stores.detach_everywhere(who, file_id)
    row = await rag.files.delete(who, file_id)
    if row is None:
        raise _not_found(file_id)
    rag.storage.remove(row.path)
    return {"id": file_id, "object": "file", "deleted": True}
