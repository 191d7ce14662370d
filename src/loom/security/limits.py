"""Per-key request limits (concurrency and requests per minute) and per-request counts.

The per-key limits live in this process's memory: with several Loom processes behind one
balancer, each enforces them on its own share. A refused request is answered at once with
a 429 and `Retry-After`; nothing queues, so nothing waits unbounded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from loom.errors import InvalidRequestError, RateLimitError


class KeyLimiter:
    """Concurrency (requests in flight) and a token bucket of requests per minute, per owner."""

    def __init__(
        self, concurrent: int, per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.concurrent = concurrent
        self.per_minute = per_minute
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._buckets: dict[str, list[float]] = {}  # owner -> [tokens, last refill time]

    @property
    def active(self) -> bool:
        return bool(self.concurrent or self.per_minute)

    def enter(self, owner: str) -> None:
        """Admit one request of `owner`, or raise RateLimitError. Pair with `leave`."""
        if self.concurrent and self._in_flight.get(owner, 0) >= self.concurrent:
            raise RateLimitError(
                f"Rate limit reached for requests: at most {self.concurrent} concurrent "
                "requests per key. Retry when one has finished.",
                retry_after=1,
            )
        if self.per_minute:
            self._take_token(owner)
        self._in_flight[owner] = self._in_flight.get(owner, 0) + 1

    def leave(self, owner: str) -> None:
        left = self._in_flight.get(owner, 1) - 1
        if left:
            self._in_flight[owner] = left
        else:
            self._in_flight.pop(owner, None)

    def _take_token(self, owner: str) -> None:
        now = self._clock()
        rate = self.per_minute / 60.0  # tokens per second
        bucket = self._buckets.get(owner)
        if bucket is None:
            bucket = self._buckets[owner] = [float(self.per_minute), now]
        tokens = min(float(self.per_minute), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            raise RateLimitError(
                f"Rate limit reached for requests: limit {self.per_minute} per minute per key.",
                retry_after=max(1, math.ceil((1.0 - tokens) / rate - 1e-6)),
            )
        bucket[0] = tokens - 1.0


def check_count(values: Any, limit: int, param: str) -> None:
    """A 400 naming `param` when a list in the request is longer than `limit`. Anything
    but a list is left to the field's own validation."""
    if isinstance(values, list) and len(values) > limit:
        raise InvalidRequestError(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{limit}, but got an array with length {len(values)} instead.",
            param=param,
            code="array_above_max_length",
        )
