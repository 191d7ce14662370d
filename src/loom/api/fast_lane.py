"""`POST /v1/responses` straight to its handler, past FastAPI's routing and dependencies.

Every turn comes through this one route, and FastAPI spends more CPU getting a request to
it than Loom spends on some whole turns: its middleware stack, a walk over every
included router's routes (twice per request in 0.165), solving the two dependencies. This
pure ASGI middleware, the innermost of Loom's own, hands the request to the very handler
the FastAPI route calls (`api.responses.create_response`), with the same services and owner
the dependencies would give, and answers a `LoomError` as the app's handler does. Any other
error propagates to the app's last-resort handler, as it would from the route. The route
itself stays registered, for /openapi.json and for anything this lane does not take.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from loom.api.json import OrjsonResponse
from loom.api.responses import create_response
from loom.errors import LoomError
from loom.security.middleware import ANONYMOUS

PATH = "/v1/responses"


class _Route:
    """What the request metrics read from `scope["route"]`: the route's path template."""

    path = PATH


_ROUTE = _Route()


class CreateResponseLane:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        scope["route"] = _ROUTE
        request = Request(scope, receive)
        state = scope.get("state") or {}
        try:
            response = await create_response(
                request, scope["app"].state.services, state.get("owner", ANONYMOUS)
            )
        except LoomError as exc:
            response = OrjsonResponse(
                exc.to_dict(), status_code=exc.status_code, headers=exc.headers
            )
        await response(scope, receive, send)
