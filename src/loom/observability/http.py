"""Per-request bookkeeping: the request id, and the HTTP request metrics.

One pure ASGI middleware. It takes the client's `X-Request-Id` (when it is short and
printable) or makes one, keeps it in a context variable that log records read, and returns
it in an `X-Request-Id` header on every response. When the request ends it counts it by
method, route template (`/v1/responses/{response_id}`, never the raw path) and status.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextvars import ContextVar

from loom.observability.metrics import HTTP_LATENCY, HTTP_REQUESTS

REQUEST_ID_HEADER = b"x-request-id"
_MAX_ID_LENGTH = 128

current_request_id: ContextVar[str | None] = ContextVar("loom_request_id", default=None)

log = logging.getLogger("loom.http")


def _accepted(value: bytes) -> str | None:
    if 0 < len(value) <= _MAX_ID_LENGTH and all(33 <= b <= 126 for b in value):
        return value.decode("ascii")
    return None


def _route_template(scope) -> str:
    """The matched route's path template, with the router's prefix (`/v1/...`)."""
    # FastAPI keeps an included router's routes unprefixed and records the full template
    # in its effective route context; a route of the app itself has it in `route.path`.
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    return path if path is not None else "unmatched"


class RequestObservabilityMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                request_id = _accepted(value)
                break
        if request_id is None:
            request_id = uuid.uuid4().hex
        # Not reset at the end: the app's last-resort error handler runs after this
        # middleware returns, in the same task, and puts the id on its 500.
        current_request_id.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            labels = (scope["method"], route, str(status))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_LATENCY.labels(*labels).observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s -> %d in %.1f ms", *labels[:2], status, elapsed * 1000)
