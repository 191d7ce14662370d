"""`/v1/organization/api_keys`: make, list and revoke API keys at run time, with the admin
key (`LOOM_ADMIN_KEY`). Shaped like OpenAI's `/v1/organization/admin_api_keys`.

A key's value is returned once, by create; afterwards only its redacted hint is shown.
Revoking keeps the record (with `revoked_at`) and takes effect on this process at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from loom.api.body import openapi_body, parse_body
from loom.api.deps import services
from loom.api.pages import page_of
from loom.errors import AuthenticationError, NotFoundError
from loom.security.keys import issue_key
from loom.services import Services

router = APIRouter()

OBJECT = "organization.api_key"


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)


async def admin(request: Request) -> None:
    """Only the admin key passes; with no admin key configured the admin API is off."""
    if not getattr(request.state, "admin", False):
        raise AuthenticationError(
            "This endpoint needs the admin key (LOOM_ADMIN_KEY), which is not set."
        )


def _render(record: dict[str, Any]) -> dict[str, Any]:
    return {"object": OBJECT, **record}


def _not_found(key_id: str) -> NotFoundError:
    return NotFoundError(f"API key with id '{key_id}' not found.", param="key_id")


@router.post(
    "/organization/api_keys",
    openapi_extra=openapi_body(CreateKey),
    dependencies=[Depends(admin)],
)
async def create_key(request: Request, svc: Services = Depends(services)):
    req, _ = await parse_body(request, CreateKey)
    return _render(await issue_key(svc.stores.api_keys, req.owner, req.name))


@router.get("/organization/api_keys", dependencies=[Depends(admin)])
async def list_keys(
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    svc: Services = Depends(services),
):
    rows, has_more = await svc.stores.api_keys.list(after=after, limit=limit)
    return page_of([_render(r) for r in rows], has_more)


@router.get("/organization/api_keys/{key_id}", dependencies=[Depends(admin)])
async def get_key(key_id: str, svc: Services = Depends(services)):
    record = await svc.stores.api_keys.get(key_id)
    if record is None:
        raise _not_found(key_id)
    return _render(record)


@router.delete("/organization/api_keys/{key_id}", dependencies=[Depends(admin)])
async def revoke_key(key_id: str, svc: Services = Depends(services)):
    if not await svc.stores.api_keys.revoke(key_id):
        raise _not_found(key_id)
    if svc.keys is not None:
        svc.keys.forget(key_id)
    return {"object": f"{OBJECT}.deleted", "id": key_id, "deleted": True}
