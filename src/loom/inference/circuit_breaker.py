"""A per-provider circuit breaker: fail fast while an upstream is down.

Closed: calls pass, and consecutive failures are counted. At `threshold` the breaker
opens: calls fail at once (503 with Retry-After) for `cooldown` seconds. Then it is
half-open: one call, the probe, goes through; its success closes the breaker, its failure
opens it again. Other calls keep failing fast while the probe is out.

What counts as a failure is the caller's choice (connect errors, timeouts, 5xx); a 429
or a client error means the upstream is up, and is not counted. Plain state, no task and
no lock: every method runs on the event loop between awaits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from loom.errors import UpstreamUnavailableError


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_out = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown:
            return "open"
        return "half_open"

    def before_call(self) -> bool:
        """Raise while open; return True when this call is the half-open probe."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self._probe_out:
            self._probe_out = True
            return True
        assert self._opened_at is not None
        wait = self.cooldown - (self._clock() - self._opened_at)
        raise UpstreamUnavailableError(
            f"provider '{self.name}' is failing; Loom stopped calling it for a while "
            f"after {self.threshold} failures in a row (circuit breaker open)",
            retry_after=max(wait, 1.0),
        )

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_out = False

    def failed(self) -> None:
        self._failures += 1
        if self._probe_out or self._failures >= self.threshold:
            self._opened_at = self._clock()
        self._probe_out = False

    def released(self, probe: bool) -> None:
        """A call that ended neither way (cancelled, or a client error): free the probe."""
        if probe:
            self._probe_out = False
