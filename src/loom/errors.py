"""One exception root for everything Loom reports to a client.

Every error a request can hit is a `LoomError` carrying the HTTP status and the fields of
OpenAI's error object, so the edge (app.py) converts it to JSON in one place and the
streaming path can turn the same error into `response.failed`.
"""

from __future__ import annotations

from typing import Any


class LoomError(Exception):
    status_code = 500
    error_type = "server_error"
    default_code: str | None = None
    headers: dict[str, str] | None = None  # extra response headers, e.g. Retry-After

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(LoomError):
    status_code = 400
    error_type = "invalid_request_error"


class NotFoundError(LoomError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ConflictError(LoomError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class UpstreamError(LoomError):
    """The model backend failed or answered with an error."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message, code=code)
        # Client errors the upstream found in what we forwarded are the client's to fix.
        if status is not None and 400 <= status < 500 and status not in (401, 403, 408, 429):
            self.status_code = 400
            self.error_type = "invalid_request_error"


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    default_code = "upstream_timeout"


class UpstreamRateLimitError(UpstreamError):
    """The upstream said 429. It stays a 429, so the client's SDK backs off."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: str | None = None):
        super().__init__(message)
        if retry_after:
            self.headers = {"Retry-After": retry_after}


class UpstreamUnavailableError(UpstreamError):
    """The provider's circuit breaker is open: Loom fails fast instead of calling it."""

    status_code = 503
    default_code = "upstream_unavailable"

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, round(retry_after)))}
