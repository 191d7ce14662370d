"""What `/openapi.json` says each route answers, using the `openai` SDK's own types.

Routes return plain dicts (serialized once, with orjson), so FastAPI cannot infer their
response bodies. `answers(Type)` documents them through FastAPI's `responses=` (docs
only: nothing is validated at run time, so the hot path pays nothing). The few envelopes
the SDK has no model for (OpenAI's error body, a list page, a deleted marker, health) are
declared here. `finish_openapi` then replaces FastAPI's default 422 entries, which Loom
never sends, by the 400 it does send.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from openai.types import ErrorObject
from pydantic import BaseModel, TypeAdapter

from loom.api.body import BODY_DEFS_KEY

T = TypeVar("T")


class ErrorResponse(BaseModel):
    """OpenAI's error body."""

    error: ErrorObject


class ListPage(BaseModel, Generic[T]):
    """OpenAI's list envelope."""

    object: Literal["list"]
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool


class Health(BaseModel):
    status: str
    database: str


# Request bodies documented by an SDK params type, by name. Their schemas are built when
# /openapi.json is first asked for, not at import: they are large and slow to build.
_SDK_BODIES: dict[str, tuple[Any, tuple[str, ...], dict[str, Any]]] = {}
_SDK_BODY_KEY = "x-loom-sdk-body"


def sdk_body(
    params: Any, required: tuple[str, ...] = (), **extra_properties: dict[str, Any]
) -> dict[str, Any]:
    """`openapi_extra` documenting a request body by the SDK's own params type (a
    TypedDict such as `ResponseCreateParamsBase`), plus properties the SDK keeps apart
    (`stream`), and fields Loom requires that the SDK does not. The route still validates
    the body itself, with a 400 naming the field."""
    _SDK_BODIES[params.__name__] = (params, required, extra_properties)
    return {_SDK_BODY_KEY: params.__name__}


def _sdk_request_body(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `requestBody` for a params type, and the schemas it refers to."""
    params, required, extra_properties = _SDK_BODIES[name]
    # Prefixed: the SDK's params types share names with each other and its response models.
    prefix = params.__name__.removesuffix("Base")
    template = f"#/components/schemas/{prefix}.{{model}}"
    schema = TypeAdapter(params).json_schema(ref_template=template)
    defs = {f"{prefix}.{name}": d for name, d in schema.pop("$defs", {}).items()}
    schema.setdefault("properties", {}).update(extra_properties)
    if required:  # what Loom needs that the SDK leaves optional
        schema["required"] = sorted({*schema.get("required", ()), *required})
    body = {"required": True, "content": {"application/json": {"schema": schema}}}
    return body, defs


STREAM_PROPERTY = {"type": "boolean", "description": "Answer with server-sent events."}

_ERROR_DESCRIPTIONS = {
    400: "Invalid request; `param` names the field",
    404: "Not found",
    409: "Conflict",
    429: "Rate limited by the upstream (with Retry-After)",
    502: "The upstream failed",
    503: "The upstream is failing; its circuit breaker is open (with Retry-After)",
    504: "The upstream timed out",
}
_UPSTREAM = (429, 502, 503, 504)


def answers(
    model: Any,
    *,
    errors: tuple[int, ...] = (400, 404),
    upstream: bool = False,
    stream: bool = False,
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that answers `model` (and SSE when `stream`)."""
    ok: dict[str, Any] = {"model": model, "description": "OK"}
    if stream:
        ok["content"] = {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "description": "one server-sent event: its `event` name and `data`",
                    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
                }
            }
        }
    out: dict[int | str, dict[str, Any]] = {200: ok}
    for status in errors + (_UPSTREAM if upstream else ()):
        out[status] = {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[status]}
    return out


def finish_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Move request bodies' schemas into components, and drop FastAPI's 422 (Loom answers
    bad input with 400 in OpenAI's shape)."""
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if _SDK_BODY_KEY in operation:
                operation["requestBody"], defs = _sdk_request_body(operation.pop(_SDK_BODY_KEY))
                operation[BODY_DEFS_KEY] = defs
            for name, schema in operation.pop(BODY_DEFS_KEY, {}).items():
                if schemas.setdefault(name, schema) != schema:
                    raise RuntimeError(f"two different schemas are named {name!r}")
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": _ERROR_DESCRIPTIONS[400],
                    "content": {"application/json": {"schema": error_ref}},
                }
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return spec
