"""`/v1/prompts`: reusable prompt templates with versions, in the shape OGX (llama-stack) serves.

OpenAI defines the create parameter `prompt: {id, version, variables}` but no API to manage
templates; OGX's is used: a prompt is `{prompt_id, version, prompt, variables, is_default}`.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from loom.api.body import openapi_body, parse_body
from loom.api.deps import owner, services
from loom.engine.prompt_templates import declared_variables
from loom.errors import InvalidRequestError, NotFoundError
from loom.services import Services
from loom.store import StaleVersionError, UnknownVersionError

router = APIRouter()

# A version is stored as a 64-bit integer; a larger one is a 400, not a database overflow.
_MAX_VERSION = 2**63 - 1


class CreatePrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    variables: list[str] | None = None


class UpdatePrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    version: int = Field(
        ge=1, le=_MAX_VERSION, description="The version this update is based on: the newest."
    )
    variables: list[str] | None = None
    set_as_default: bool = True


class SetDefaultVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=_MAX_VERSION)


def _not_found(prompt_id: str, version: int | None = None) -> NotFoundError:
    what = f"Prompt '{prompt_id}'" + (f" version {version}" if version is not None else "")
    return NotFoundError(f"{what} not found.", param="prompt_id")


@router.post("/prompts", openapi_extra=openapi_body(CreatePrompt))
async def create_prompt(
    request: Request, svc: Services = Depends(services), who: str = Depends(owner)
):
    body, _ = await parse_body(request, CreatePrompt)
    variables = declared_variables(body.prompt, body.variables, "variables")
    prompt_id = f"pmpt_{secrets.token_hex(24)}"
    return await svc.stores.prompts.create(who, prompt_id, body.prompt, variables)


@router.get("/prompts")
async def list_prompts(svc: Services = Depends(services), who: str = Depends(owner)):
    return {"object": "list", "data": await svc.stores.prompts.list(who)}


@router.get("/prompts/{prompt_id}")
async def get_prompt(
    prompt_id: str,
    version: int | None = Query(default=None, ge=1, le=_MAX_VERSION),
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    """The given version, or the default version when none is given."""
    found = await svc.stores.prompts.get(who, prompt_id, version)
    if found is None:
        raise _not_found(prompt_id, version)
    return found


@router.post("/prompts/{prompt_id}", openapi_extra=openapi_body(UpdatePrompt))
async def update_prompt(
    prompt_id: str,
    request: Request,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    """Save a new version. `version` must be the newest, so no concurrent edit is lost."""
    body, _ = await parse_body(request, UpdatePrompt)
    variables = declared_variables(body.prompt, body.variables, "variables")
    try:
        updated = await svc.stores.prompts.update(
            who,
            prompt_id,
            based_on=body.version,
            text=body.prompt,
            variables=variables,
            set_as_default=body.set_as_default,
        )
    except StaleVersionError as exc:
        raise InvalidRequestError(
            f"Version {body.version} is not the newest version of prompt '{prompt_id}' "
            f"(that is {exc.latest}); update from the newest version.",
            param="version",
            code="invalid_value",
        ) from None
    if updated is None:
        raise _not_found(prompt_id)
    return updated


@router.get("/prompts/{prompt_id}/versions")
async def list_prompt_versions(
    prompt_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    versions = await svc.stores.prompts.versions(who, prompt_id)
    if versions is None:
        raise _not_found(prompt_id)
    return {"object": "list", "data": versions}


@router.post(
    "/prompts/{prompt_id}/set-default-version", openapi_extra=openapi_body(SetDefaultVersion)
)
async def set_default_version(
    prompt_id: str,
    request: Request,
    svc: Services = Depends(services),
    who: str = Depends(owner),
):
    body, _ = await parse_body(request, SetDefaultVersion)
    try:
        updated = await svc.stores.prompts.set_default(who, prompt_id, body.version)
    except UnknownVersionError:
        raise NotFoundError(
            f"Prompt '{prompt_id}' has no version {body.version}.", param="version"
        ) from None
    if updated is None:
        raise _not_found(prompt_id)
    return updated


@router.delete("/prompts/{prompt_id}")
async def delete_prompt(
    prompt_id: str, svc: Services = Depends(services), who: str = Depends(owner)
):
    if not await svc.stores.prompts.delete(who, prompt_id):
        raise _not_found(prompt_id)
    return {"id": prompt_id, "object": "prompt.deleted", "deleted": True}
