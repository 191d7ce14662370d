"""The ASGI layer that every request passes first: body size, API key, per-key limits.

One pure-ASGI middleware, so the cost on the hot path is a header scan, a digest, a dict
lookup and two counters: no extra task, no buffering, no per-event work on a stream. It
answers on its own (in OpenAI's error shape) when a request is refused, and otherwise
puts the owner in the request's state, where `loom.api.deps.owner` reads it for every
route, present and future, so each store query is scoped to that owner.
"""

from __future__ import annotations

from typing import Any

import orjson

from loom.errors import AuthenticationError, LoomError, PayloadTooLargeError, RateLimitError
from loom.security.keys import KeyRing
from loom.security.limits import KeyLimiter

ANONYMOUS = "anonymous"
ADMIN_PREFIX = "/v1/organization/"
# Served to anyone: liveness, the API description, and the operator's scrape endpoint.
PUBLIC_PATHS = frozenset(
    {"/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/metrics"}
)
# The console's pages and assets: static, no one's data (they read /v1 with the user's key).
CONSOLE_PREFIX = "/console"

_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_WRONG_KEY = "Incorrect API key provided."


class Guard:
    """What the middleware consults; the key ring is set once the database is open."""

    def __init__(
        self,
        limiter: KeyLimiter,
        max_body_bytes: int,
        upload_limits: dict[str, int] | None = None,
    ) -> None:
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes
        # Paths whose bodies are uploads streamed to disk, each with its own limit, which
        # the route itself enforces on the file while it streams (POST /v1/files).
        self.upload_limits = upload_limits or {}
        self.keys: KeyRing | None = None

    def body_limit(self, path: str) -> int:
        return self.upload_limits.get(path, self.max_body_bytes)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than the limit of {limit} bytes.",
        param="max_body_bytes",
    )


async def send_error(send: Any, exc: LoomError) -> None:
    headers = [(b"content-type", b"application/json")]
    if isinstance(exc, RateLimitError):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    body = orjson.dumps(exc.to_dict())
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _headers(scope: dict[str, Any]) -> tuple[str | None, int | None]:
    """The bearer key and the declared Content-Length, in one pass over the headers."""
    key = length = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                key = token.strip()
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
    return key, length


def _is_console(path: str) -> bool:
    return path.startswith(CONSOLE_PREFIX) and (
        len(path) == len(CONSOLE_PREFIX) or path[len(CONSOLE_PREFIX)] == "/"
    )


class SecurityMiddleware:
    def __init__(self, app: Any, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        guard = self.guard
        key, length = _headers(scope)
        path = scope["path"]
        body_limit = guard.body_limit(path)
        if kind == "http" and length is not None and length > body_limit:
            return await send_error(send, _too_large(body_limit))
        if path in PUBLIC_PATHS or _is_console(path):
            return await self.app(scope, receive, send)
        try:
            owner, admin = await self._who(key, path)
        except AuthenticationError as exc:
            if kind == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await send_error(send, exc)
        # A copy: the server may share the lifespan state dict between requests.
        scope["state"] = {**(scope.get("state") or {}), "owner": owner, "admin": admin}
        if kind == "http" and length is None and scope.get("method") not in ("GET", "HEAD"):
            receive, send = _BodyCounter(receive, send, body_limit).wrap()
        limiter = guard.limiter
        if admin or kind == "websocket" or not limiter.active:
            return await self.app(scope, receive, send)
        try:
            limiter.enter(owner)
        except RateLimitError as exc:
            return await send_error(send, exc)
        try:
            await self.app(scope, receive, send)
        finally:
            limiter.leave(owner)

    async def _who(self, key: str | None, path: str) -> tuple[str, bool]:
        """The owner the request acts for, and whether it holds the admin key."""
        keys = self.guard.keys
        if keys is None or not keys.enabled:
            return ANONYMOUS, False
        if key is None:
            raise AuthenticationError(_MISSING_KEY)
        principal = await keys.principal(key)
        if principal is None:
            raise AuthenticationError(_WRONG_KEY)
        if principal.admin != path.startswith(ADMIN_PREFIX):
            raise AuthenticationError(
                "The admin key only manages API keys; use an API key for this endpoint."
                if principal.admin
                else "This endpoint needs the admin key."
            )
        return principal.owner, principal.admin


class _BodyCounter:
    """For a body without Content-Length: count it as it arrives, and answer 413 the moment
    it passes the limit, without buffering it. The route's read fails with the same error;
    if the app still answers something else, the 413 is sent in its place."""

    def __init__(self, receive: Any, send: Any, limit: int) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._seen = 0
        self._exceeded = False
        self._replaced = False

    def wrap(self) -> tuple[Any, Any]:
        return self.receive, self.send

    async def receive(self) -> dict[str, Any]:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self._exceeded = True
                raise _too_large(self._limit)
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if not self._exceeded:
            return await self._send(message)
        if not self._replaced:
            self._replaced = True
            await send_error(self._send, _too_large(self._limit))
