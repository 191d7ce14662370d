"""One exception root for everything Loom reports to a client.

Every error a request can hit is a `LoomError` carrying the HTTP status and the fields of
OpenAI's error object, so the edge (app.py) converts it to JSON in one place and the
streaming path can turn the same error into `response.failed`. This module is also the
one vocabulary for building error bodies (`error_body`), naming the field at fault
(`param_of`) and refusing a bad field (`invalid_value`), so every layer words them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error JSON: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


# pydantic names the branch of a union it tried in an error's location: `str`,
# `list[any]`, `function-after[...]`, a model's class name. None of them is a field.
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "is-instance"})


def _is_union_branch(part: str) -> bool:
    return (
        part in _UNION_TAGS
        or "[" in part
        or part.startswith(("function-", "literal"))
        or part[:1].isupper()
    )


def param_of(loc: Sequence[Any], prefix: str = "") -> str | None:
    """Render a pydantic error location as OpenAI renders `param`, e.g. `input[0].content`;
    `prefix` is where the validated value sits in the request (`items[2]`)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (part == "body" and not out) or _is_union_branch(str(part)):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or None


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
        return error_body(self.message, self.error_type, self.param, self.code)


class InvalidRequestError(LoomError):
    status_code = 400
    error_type = "invalid_request_error"


def invalid_value(param: str, message: str) -> InvalidRequestError:
    """The 400 for a field whose value Loom cannot use; `param` names the field."""
    return InvalidRequestError(message, param=param, code="invalid_value")


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


# -- production safety: keys and limits -----------------------------------------------------


class AuthenticationError(LoomError):
    """No key, or one this server does not know: OpenAI's `invalid_api_key`."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PayloadTooLargeError(LoomError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(LoomError):
    """A per-key limit was hit; `retry_after` (seconds) goes out as `Retry-After`."""

    status_code = 429
    error_type = "requests"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}
