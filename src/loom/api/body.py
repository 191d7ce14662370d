"""Read a JSON request body and validate it, turning every problem into a 400 naming the field.

Routes keep the raw dict (forwarded upstream untouched) next to the validated model.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from loom.errors import InvalidRequestError, param_of

M = TypeVar("M", bound=BaseModel)


def validation_error(exc: ValidationError) -> InvalidRequestError:
    err = exc.errors()[0]
    param = param_of(tuple(err["loc"]))
    message = err["msg"]
    if param:
        message = f"Invalid value for '{param}': {message}"
    return InvalidRequestError(message, param=param, code="invalid_value")


async def read_json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise InvalidRequestError("The request body is empty; expected a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return data


async def parse_body(request: Request, model: type[M]) -> tuple[M, dict[str, Any]]:
    data = await read_json_object(request)
    try:
        return model.model_validate(data), data
    except ValidationError as exc:
        raise validation_error(exc) from None


# Where `openapi_body` leaves the schemas its body refers to; the app moves them into
# `components.schemas` (see api/openapi_docs.py), where the `$ref`s point.
BODY_DEFS_KEY = "x-loom-body-defs"


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself, so /openapi.json documents it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        },
        BODY_DEFS_KEY: defs,
    }
