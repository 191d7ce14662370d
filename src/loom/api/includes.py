"""The `include` query parameter of the list routes, read the way the SDK sends it."""

from __future__ import annotations

from fastapi import Query, Request

from loom.engine.params import INCLUDABLE
from loom.errors import InvalidRequestError

__all__ = ["INCLUDABLE", "includes"]


async def includes(
    request: Request,
    include: list[str] | None = Query(
        None,
        description="`file_search_call.results` adds search results to file_search_call"
        " items; the other values are accepted for compatibility.",
    ),
) -> list[str]:
    """The `include` query values, validated. The `openai` SDK sends them as `include[]`,
    so they are read from the query string; the declared `include` documents the param."""
    params = request.query_params
    values = params.getlist("include") + params.getlist("include[]")
    for value in values:
        if value not in INCLUDABLE:
            raise InvalidRequestError(
                f"Invalid value for 'include': {value!r}; expected one of {sorted(INCLUDABLE)}.",
                param="include",
                code="invalid_value",
            )
    return values
